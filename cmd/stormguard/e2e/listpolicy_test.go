package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/policy"
)

const otherList = "other@example.org"

// TestListPolicyThroughPostfix is the proof through a real
// Postfix, on both backends: with all-staff at max_replies 3 (set with
// stormguard lists set ... --max-replies 3) and another list at the
// site's default 10, the 4th reply to all-staff is refused while the
// other list's thread takes 10 and refuses the 11th; a thread to both
// lists gets the strictest, 3.
func TestListPolicyThroughPostfix(t *testing.T) {
	run := func(t *testing.T, n node, tag string) {
		storm := func(name string, lists []string, take int) {
			t.Helper()
			root := fmt.Sprintf("%s-%s@example.org", name, tag)
			subject := "Policy test " + name
			orig := smtpenv.NewMessage().Add("From", "<"+boss+">").Add("To", strings.Join(lists, ", ")).
				Add("Subject", subject).Add("Message-ID", "<"+root+">").SetBody("Hello.\n").Bytes()
			if r := send(t, n, boss, lists, orig); !r.OK() {
				t.Fatalf("%s: original: %v", name, r)
			}
			reply := func(i int) (int, string) {
				sender := fmt.Sprintf("user%d@example.org", i)
				msg := smtpenv.NewMessage().Add("From", "<"+sender+">").Add("To", strings.Join(lists, ", ")).
					Add("Subject", "RE: "+subject).Add("Message-ID", fmt.Sprintf("<reply-%d-%s>", i, root)).
					Add("In-Reply-To", "<"+root+">").Add("References", "<"+root+">").SetBody("Me too.\n").Bytes()
				r := send(t, n, sender, lists, msg)
				return r.Code, r.Text
			}
			for i := 1; i <= take; i++ {
				if code, text := reply(i); code != 250 {
					t.Fatalf("%s: reply %d: %d %s, want 250", name, i, code, text)
				}
			}
			code, text := reply(take + 1)
			if code != 550 || !strings.Contains(text, string(threadOf(root))) {
				t.Fatalf("%s: reply %d: %d %s, want 550 naming thread %s", name, take+1, code, text, threadOf(root))
			}
			t.Logf("%s: %d replies taken, reply %d refused: %d %s", name, take, take+1, code, text)
		}
		storm("allstaff", []string{staffList}, 3)
		storm("other", []string{otherList}, 10)
		storm("both", []string{otherList, staffList}, 3)
	}

	t.Run("redis", func(t *testing.T) {
		rd := redisenv.Start(t)
		sink := smtpenv.StartSink(t)
		redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000", otherList, "3000")
		yaml := fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\n", rd)
		n := startNode(t, yaml, sink)
		from := n.log.len()
		out := mustRun(t, "lists", "set", staffList, "3000", "--max-replies", "3", "--config", writeConfig(t, yaml))
		if !strings.Contains(out, `own policy {"max_replies":3} (redis)`) || !strings.Contains(out, "max_replies 3,") {
			t.Errorf("lists set: %q", out)
		}
		if got := redisenv.CLI(t, rd, "HGET", "stormguard:listpolicy", staffList); got != `{"max_replies":3}` {
			t.Fatalf("redis-cli HGET stormguard:listpolicy = %q", got)
		}
		n.log.wait(t, from, "site settings loaded", "list_policies=1")
		run(t, n, "r")
	})

	t.Run("memory", func(t *testing.T) {
		sink := smtpenv.StartSink(t)
		n := startNode(t, fmt.Sprintf("store:\n  backend: memory\n  refresh: 1h\nlists:\n  %s: 3000\n  %s: 3000\n", staffList, otherList), sink)
		n.log.wait(t, 0, "stormguard started", "admin_api=true")
		from := n.log.len()
		cfg := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+n.http+"\n")
		if out := mustRun(t, "lists", "set", staffList, "3000", "--max-replies", "3", "--config", cfg); !strings.Contains(out, `own policy {"max_replies":3} (memory)`) {
			t.Errorf("lists set: %q", out)
		}
		n.log.wait(t, from, "site settings loaded", "list_policies=1")
		run(t, n, "m")
	})
}

// TestListsPolicyCommand: lists set's policy flags write the Redis hash
// an operator could write with redis-cli, lists shows the effective
// policy per list, whatever a hostile value holds it prints one clean
// line, and mistakes are refused naming the flag or setting.
func TestListsPolicyCommand(t *testing.T) {
	rd := redisenv.Start(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\npolicy:\n  action: tempfail\nlists:\n  cfg@example.org: 40\nlist_policy:\n  cfg@example.org: \"action=hold;min_audience=10\"\n", rd))
	out := mustRun(t, "lists", "set", "All-Staff@Example.org", "850000", "--max-replies", "3", "--action", "reject",
		"--posters", "comms@example.org,@hr.example.org", "--config", cfg)
	// Limit rules beyond the two this test sets are off for every list
	// here (the site's default of a new rule): their columns read "off".
	var moreHead, moreOff, moreText string
	for _, r := range policy.LimitRules[2:] {
		moreHead += " " + strings.ToUpper(r.Key)
		moreOff += " off"
		moreText += ", " + r.Key + " off"
	}
	if !strings.Contains(out, "a message to it alone: min_audience 2500, max_replies 3, delivery_budget 1000000"+moreText+", action reject, posters comms@example.org,@hr.example.org") {
		t.Errorf("lists set: %q", out)
	}
	if got := redisenv.CLI(t, rd, "HGET", "stormguard:listpolicy", staffList); got != `{"max_replies":3,"action":"reject","posters":["comms@example.org","@hr.example.org"]}` {
		t.Errorf("HGET = %q", got)
	}
	// What an operator writes with redis-cli, hostile included.
	redisenv.CLI(t, rd, "HSET", "stormguard:listpolicy", "quiet@example.org", "max_replies=0;delivery_budget=0",
		"evil\x1b[2J@example.org", "posters=<script>\x1b[31m@x,\x07@y")
	out = mustRun(t, "lists", "--config", cfg)
	norm := strings.Join(strings.Fields(out), " ")
	for _, w := range []string{
		"LIST MEMBERS FROM MIN_AUDIENCE MAX_REPLIES DELIVERY_BUDGET" + moreHead + " ACTION POSTERS POLICY_FROM",
		"all-staff@example.org 850000 redis 2500 3 1000000" + moreOff + " reject comms@example.org,@hr.example.org redis",
		"cfg@example.org 40 config 10 10 1000000" + moreOff + " hold - config",
		"quiet@example.org - - 2500 off off" + moreOff + " tempfail - redis",
		"evil [2j@example.org - - 2500 10 1000000" + moreOff + " tempfail <script> [31m@x, @y redis",
	} {
		if !strings.Contains(norm, w) {
			t.Errorf("lists lacks %q:\n%s", w, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("lists printed a terminal escape: %q", out)
	}

	mustRun(t, "lists", "set", staffList, "850000", "--clear-policy", "--config", cfg)
	if got := redisenv.CLI(t, rd, "HEXISTS", "stormguard:listpolicy", staffList); got != "0" {
		t.Errorf("after --clear-policy HEXISTS = %q", got)
	}
	mustRun(t, "lists", "set", staffList, "850000", "--config", cfg) // no policy flag: the policy is not touched
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--action", "drop"}, "action"},
		{[]string{"--max-replies", "-1"}, "max_replies"},
		{[]string{"--posters", "a@b;max_replies=1"}, "posters"},
		{[]string{"--clear-policy", "--max-replies", "3"}, "--clear-policy"},
	} {
		args := append([]string{"lists", "set", staffList, "850000"}, c.args...)
		if code, _, errb := run(t, append(args, "--config", cfg)...); code == 0 || !strings.Contains(errb, c.want) {
			t.Errorf("lists set %v: exit %d %q, want an error naming %s", c.args, code, errb, c.want)
		}
	}
	mustRun(t, "lists", "delete", "quiet@example.org", "--config", cfg)
	if got := redisenv.CLI(t, rd, "HEXISTS", "stormguard:listpolicy", "quiet@example.org"); got != "0" {
		t.Errorf("after lists delete HEXISTS = %q", got)
	}
}

// TestListPolicyReload: list_policy changed in the file applies on SIGHUP
// (the real binary); a change that would hold, on a daemon started
// without hold, is kept for the restart and named, and the rest of the
// reload applies.
func TestListPolicyReload(t *testing.T) {
	const lists = "lists:\n  " + staffList + ": 3000\n"
	d := startBinary(t, lists)
	if n := firstRefused(t, d.addr, "lp-before@example.org", 12); n != 11 {
		t.Fatalf("site max_replies 10: first refused reply %d, want 11", n)
	}
	d.reload(t, lists+"list_policy:\n  "+staffList+":\n    max_replies: 3\n", "configuration reloaded", "changed=list_policy")
	if n := firstRefused(t, d.addr, "lp-after@example.org", 5); n != 4 {
		t.Fatalf("after reload to all-staff max_replies 3: first refused reply %d, want 4", n)
	}
	d.reload(t, lists+"policy:\n  max_replies: 8\nlist_policy:\n  "+staffList+": \"max_replies=2;action=hold\"\n",
		"configuration reloaded", "changed=policy.max_replies", "restart_needed=list_policy")
	if n := firstRefused(t, d.addr, "lp-hold@example.org", 5); n != 4 {
		t.Fatalf("after a reload that would hold: first refused reply %d, want 4 (the running list policy kept)", n)
	}
}
