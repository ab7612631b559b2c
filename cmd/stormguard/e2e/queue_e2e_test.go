package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/sendmailenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/mtaqueue"
	"github.com/stormguard/stormguard/policy"
)

// queueResult is the part of `stormguard queue --json`'s output these
// tests read.
type queueResult struct {
	Queued  []history.QueueRef `json:"queued"`
	Node    string             `json:"node"`
	Results []mtaqueue.Result  `json:"results"`
}

// deferringPostfix starts a private Postfix whose destination never takes
// mail (every message stays deferred), with milter as its smtpd_milters
// ("" for none).
func deferringPostfix(t *testing.T, milter string) *postfixenv.Server {
	t.Helper()
	return postfixenv.Start(t, postfixenv.Options{
		RelayTo: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		Milter:  milter,
		Extra:   postfixenv.DeferAll,
	})
}

// queueMail sends one message to rcpts through pf and returns its queue id.
func queueMail(t *testing.T, pf *postfixenv.Server, from string, rcpts []string, data []byte) string {
	t.Helper()
	r, err := smtpenv.Send(pf.Addr, from, rcpts, data)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return smtpenv.QueueID(t, r)
}

func plainMail(subject string) []byte {
	return smtpenv.NewMessage().Add("From", "someone@example.com").Add("To", "rcpt@example.org").
		Add("Subject", subject).Add("Message-ID", "<"+strings.ReplaceAll(subject, " ", ".")+"@example.com>").
		SetBody("Hello.\n").Bytes()
}

// queuedStorm sends through pf an original to staffList and replies until
// one is refused (max_replies 3), and returns the queue ids Postfix gave
// the original and the accepted replies.
func queuedStorm(t *testing.T, pf *postfixenv.Server, root, subject string) []string {
	t.Helper()
	ids := []string{queueMail(t, pf, boss, []string{staffList}, originalMail(root, staffList, subject))}
	for i := 1; ; i++ {
		r, err := smtpenv.Send(pf.Addr, fmt.Sprintf("user%d@example.org", i), []string{staffList, boss}, replyAllMail(i, root, staffList, subject))
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.Code == 550 {
			if i != 4 {
				t.Fatalf("reply %d refused, want the 4th (max_replies 3)", i)
			}
			return ids
		}
		ids = append(ids, smtpenv.QueueID(t, r))
		if i > 4 {
			t.Fatalf("reply %d accepted: no storm", i)
		}
	}
}

// queueJSON runs stormguard queue with --json and decodes what it prints.
func queueJSON(t *testing.T, args ...string) queueResult {
	t.Helper()
	out := mustRun(t, append([]string{"queue", "--json"}, args...)...)
	var res queueResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stormguard queue %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return res
}

// waitQueued polls stormguard queue THREAD until it lists n queue ids: the
// daemon records them off the mail path.
func waitQueued(t *testing.T, cfg string, thread policy.ThreadID, n int) []history.QueueRef {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := queueJSON(t, "--config", cfg, string(thread))
		if len(res.Queued) >= n {
			return res.Queued
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %s: %d queue ids recorded after 30s, want %d: %+v", thread, len(res.Queued), n, res.Queued)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQueueThroughPostfix: a storm through the real Postfix, whose
// destination keeps every message queued; stormguard queue lists the
// original and the accepted replies with their Postfix queue ids, --delete
// removes exactly them, and --hold / --release move a second storm's
// messages to the hold queue and back. On Redis (the command reads Redis)
// and on the memory store (it asks the daemon's admin API).
func TestQueueThroughPostfix(t *testing.T) {
	const common = "node: " + queueTestNode + "\npolicy:\n  max_replies: 3\n"
	t.Run("redis", func(t *testing.T) {
		rd := redisenv.Start(t)
		redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000")
		yaml := common + fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\n", rd)
		d := startDaemon(t, yaml)
		queueThroughPostfix(t, d, writeConfig(t, yaml))
	})
	t.Run("memory", func(t *testing.T) {
		yaml := common + "store:\n  backend: memory\nlists:\n  " + staffList + ": 3000\n"
		d := startDaemon(t, yaml)
		queueThroughPostfix(t, d, writeConfig(t, yaml+"http:\n  listen: "+d.http+"\n"))
	})
}

const queueTestNode = "mx-queue-test"

func queueThroughPostfix(t *testing.T, d *daemon, cfg string) {
	const nodeName = queueTestNode
	d.log.wait(t, 0, "site settings loaded", "lists=1")
	pf := deferringPostfix(t, "inet:"+d.addr)
	pfFlag := "--postfix-config=" + pf.ConfigDir

	var unrelated []string
	for i := range 2 {
		unrelated = append(unrelated, queueMail(t, pf, "someone@example.com", []string{"rcpt@example.org"}, plainMail(fmt.Sprintf("unrelated %d", i))))
	}
	root := "queue-storm-1@example.org"
	thread := threadOf(root)
	stormIDs := queuedStorm(t, pf, root, "Queue test <b>one</b>")
	all := append(slices.Clone(unrelated), stormIDs...)
	pf.WaitQueue("every message queued", func(q map[string]string) bool {
		for _, id := range all {
			if q[id] == "" {
				return false
			}
		}
		return len(q) == len(all)
	})

	refs := waitQueued(t, cfg, thread, len(stormIDs))
	var got []string
	for _, r := range refs {
		got = append(got, r.ID)
		if r.Node != nodeName || r.Status != history.QueueAccepted {
			t.Errorf("queue id %+v: want node %s, status accepted", r, nodeName)
		}
	}
	if !slices.Equal(got, stormIDs) {
		t.Fatalf("stormguard queue lists %v, want the original and accepted replies, oldest first: %v", got, stormIDs)
	}
	if refs[0].Kind != "original" || refs[1].Kind != "reply" {
		t.Errorf("kinds: %+v", refs)
	}
	table := mustRun(t, "queue", "--config", cfg, string(thread))
	for _, id := range stormIDs {
		if !strings.Contains(table, nodeName+"  "+id) {
			t.Errorf("the table lacks %s on %s:\n%s", id, nodeName, table)
		}
	}
	t.Logf("stormguard queue %s:\n%s", thread, table)

	out := mustRun(t, "queue", "--config", cfg, pfFlag, "--delete", string(thread))
	t.Logf("stormguard queue %s --delete:\n%s", thread, out)
	if n := strings.Count(out, "deleted (was in "); n != len(stormIDs) {
		t.Errorf("--delete: %d deleted, want %d:\n%s", n, len(stormIDs), out)
	}
	q := pf.QueueNames()
	if want := map[string]string{unrelated[0]: q[unrelated[0]], unrelated[1]: q[unrelated[1]]}; !maps.Equal(q, want) || q[unrelated[0]] == "" || q[unrelated[1]] == "" {
		t.Fatalf("after --delete: queue %v, want only the unrelated %v", q, unrelated)
	}
	out = mustRun(t, "queue", "--config", cfg, pfFlag, "--delete", string(thread))
	if n := strings.Count(out, "already gone"); n != len(stormIDs) {
		t.Errorf("second --delete: %d already gone, want %d:\n%s", n, len(stormIDs), out)
	}

	// Hold, then release, a second storm.
	root = "queue-storm-2@example.org"
	thread = threadOf(root)
	stormIDs = queuedStorm(t, pf, root, "Queue test two")
	waitQueued(t, cfg, thread, len(stormIDs))
	res := queueJSON(t, "--config", cfg, pfFlag, "--hold", string(thread))
	if len(res.Results) != len(stormIDs) || res.Node != nodeName {
		t.Fatalf("--hold: %+v", res)
	}
	for _, r := range res.Results {
		if r.Outcome != mtaqueue.Held {
			t.Errorf("--hold: %+v", r)
		}
	}
	q = pf.QueueNames()
	for _, id := range stormIDs {
		if q[id] != "hold" {
			t.Errorf("after --hold: %s in %q, want hold", id, q[id])
		}
	}
	for _, id := range unrelated {
		if q[id] == "hold" || q[id] == "" {
			t.Errorf("after --hold: unrelated %s in %q", id, q[id])
		}
	}
	out = mustRun(t, "queue", "--config", cfg, pfFlag, "--release", string(thread))
	if n := strings.Count(out, "released (was in hold)"); n != len(stormIDs) {
		t.Errorf("--release: %d released, want %d:\n%s", n, len(stormIDs), out)
	}
	q = pf.QueueNames()
	for _, id := range stormIDs {
		if q[id] == "hold" || q[id] == "" {
			t.Errorf("after --release: %s in %q, want back in the queue", id, q[id])
		}
	}
}

// TestQueueThroughSendmail: the same through the real Sendmail, whose
// relay refuses every connection (mail stays queued): --hold quarantines
// the storm's messages, --release takes them out, --delete removes
// exactly them.
func TestQueueThroughSendmail(t *testing.T) {
	rd := redisenv.Start(t)
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000")
	yaml := "node: " + queueTestNode + "\npolicy:\n  max_replies: 3\n" +
		fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\n", rd)
	d := startDaemon(t, yaml)
	d.log.wait(t, 0, "site settings loaded", "lists=1")
	cfg := writeConfig(t, yaml)
	sm := sendmailenv.Start(t, sendmailenv.Options{
		RelayTo: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		Milter:  withPort(readmeSendmailLine(t), d.addr),
	})
	smFlags := []string{"--mta=sendmail", "--sendmail-cf=" + sm.CF, "--sendmail-bin=" + sm.Tool()}
	files := func() map[string]string { // id -> qf (queued) or hf (quarantined)
		ents, err := os.ReadDir(sm.QueueDir())
		if err != nil {
			t.Fatal(err)
		}
		q := map[string]string{}
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, "qf") || strings.HasPrefix(n, "hf") {
				q[n[2:]] = n[:2]
			}
		}
		return q
	}
	sendID := func(from string, rcpts []string, data []byte) (string, int) {
		t.Helper()
		r, err := smtpenv.Send(sm.Addr, from, rcpts, data)
		if err != nil {
			t.Fatalf("smtp: %v", err)
		}
		if !r.OK() {
			return "", r.Code
		}
		f := strings.Fields(r.Text) // 2.0.0 ID Message accepted for delivery
		if len(f) < 2 {
			t.Fatalf("no queue id in %v", r)
		}
		return f[1], r.Code
	}
	unrelated, _ := sendID("someone@example.com", []string{"rcpt@example.org"}, plainMail("unrelated sendmail"))
	root := "queue-storm-sm@example.org"
	thread := threadOf(root)
	orig, _ := sendID(boss, []string{staffList}, originalMail(root, staffList, "Sendmail storm"))
	stormIDs := []string{orig}
	for i := 1; i <= 4; i++ {
		id, code := sendID(fmt.Sprintf("user%d@example.org", i), []string{staffList, boss}, replyAllMail(i, root, staffList, "Sendmail storm"))
		if (i <= 3) != (code == 250) {
			t.Fatalf("reply %d: %d; want 3 accepted, the 4th refused", i, code)
		}
		if id != "" {
			stormIDs = append(stormIDs, id)
		}
	}
	refs := waitQueued(t, cfg, thread, len(stormIDs))
	var got []string
	for _, r := range refs {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, stormIDs) {
		t.Fatalf("stormguard queue lists %v, want Sendmail's ids %v", got, stormIDs)
	}

	for _, step := range []struct {
		flag, result, file string
	}{
		{"--hold", "held (was in queue)", "hf"},
		{"--release", "released (was in quarantine)", "qf"},
		{"--delete", "deleted (was in queue)", ""},
	} {
		out := mustRun(t, append([]string{"queue", "--config", cfg, step.flag, string(thread)}, smFlags...)...)
		if n := strings.Count(out, step.result); n != len(stormIDs) {
			t.Errorf("%s: %d %q, want %d:\n%s", step.flag, n, step.result, len(stormIDs), out)
		}
		q := files()
		for _, id := range stormIDs {
			if q[id] != step.file {
				t.Errorf("after %s: %s is %q, want %q", step.flag, id, q[id], step.file)
			}
		}
		if q[unrelated] != "qf" {
			t.Errorf("after %s: the unrelated %s is %q, want qf", step.flag, unrelated, q[unrelated])
		}
		t.Logf("stormguard queue %s %s --mta sendmail:\n%s", thread, step.flag, out)
	}
}
