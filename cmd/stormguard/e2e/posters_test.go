package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// TestPostersCommand: stormguard posters on the Redis backend lists the
// config's and the Redis set's posters with where each comes from (an
// entry typed into Redis with terminal escapes is printed without them),
// add and delete change stormguard:posters as redis-cli sees it, and
// malformed posters are refused before anything is written.
func TestPostersCommand(t *testing.T) {
	rd := redisenv.Start(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\ngate:\n  min_audience: 5000\n  posters: [Comms@Example.org, jdoe]\n", rd))

	if out := mustRun(t, "posters", "add", "Newcomer@Example.NET", "--config", cfg); !strings.Contains(out, "poster newcomer@example.net: allowed; every node uses it within") {
		t.Errorf("posters add: %q", out)
	}
	if got := redisenv.CLI(t, rd, "SISMEMBER", "stormguard:posters", "newcomer@example.net"); got != "1" {
		t.Errorf("after posters add, SISMEMBER = %q, want 1", got)
	}
	mustRun(t, "posters", "add", "jdoe", "--config", cfg)
	redisenv.CLI(t, rd, "SADD", "stormguard:posters", "@hr.example.org", "evil\x1b[2J\x1b]0;pwned\x07@example.org")
	out := mustRun(t, "posters", "--config", cfg)
	t.Logf("stormguard posters:\n%s", out)
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("posters printed a terminal escape: %q", out)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		rows[f[0]] = strings.Join(f[1:], " ")
	}
	for poster, from := range map[string]string{
		"comms@example.org":    "config",
		"jdoe":                 "config, redis",
		"newcomer@example.net": "redis",
		"@hr.example.org":      "redis",
	} {
		if rows[poster] != from {
			t.Errorf("posters: %s from %q, want %q\n%s", poster, rows[poster], from, out)
		}
	}

	if out := mustRun(t, "posters", "delete", "NEWCOMER@example.net", "--config", cfg); !strings.Contains(out, "poster newcomer@example.net: removed from Redis") {
		t.Errorf("posters delete: %q", out)
	}
	if got := redisenv.CLI(t, rd, "SISMEMBER", "stormguard:posters", "newcomer@example.net"); got != "0" {
		t.Errorf("after posters delete, SISMEMBER = %q, want 0", got)
	}
	if out := mustRun(t, "posters", "delete", "jdoe", "--config", cfg); !strings.Contains(out, "the config file (gate.posters) still allows it") {
		t.Errorf("posters delete of a config poster also in Redis: %q", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "newcomer@example.net"}, "not in the redis store"},
		{[]string{"delete", "comms@example.org"}, "comes from the config file (gate.posters)"},
		{[]string{"add", "a b@example.org"}, "spaces, control or invisible characters"},
		{[]string{"add", "x\r\nSADD@example.org"}, "spaces, control or invisible characters"},
		{[]string{"add", "x\x1b[31m@example.org"}, "spaces, control or invisible characters"},
		{[]string{"add", "<a@example.org>"}, "brackets"},
		{[]string{"add", "a@b@example.org"}, "more than one @"},
		{[]string{"add", "@"}, "no domain"},
		{[]string{"add", " "}, "empty"},
	} {
		code, _, errb := run(t, append(append([]string{"posters"}, tc.args...), "--config", cfg)...)
		if code == 0 || !strings.Contains(errb, tc.want) {
			t.Errorf("posters %q: exit %d, stderr %q; want an error with %q", tc.args, code, errb, tc.want)
		}
		if strings.ContainsAny(errb, "\x1b\r") {
			t.Errorf("posters %q: the error echoes control characters: %q", tc.args, errb)
		}
	}
	if got := redisenv.CLI(t, rd, "SCARD", "stormguard:posters"); got != "2" {
		t.Errorf("stormguard:posters has %s members after the refused adds, want 2 (@hr, evil)", got)
	}
}

// TestPostersOnMemoryStore: with the memory store, stormguard posters
// talks to the running daemon's admin API: a poster added is let through
// the gate by the very next message through a real Postfix (store.refresh
// is an hour: only the API's immediate re-read explains it), and deleted
// is refused again.
func TestPostersOnMemoryStore(t *testing.T) {
	sink := smtpenv.StartSink(t)
	n := startNode(t, "store:\n  backend: memory\n  refresh: 1h\nlists:\n  "+staffList+": 850000\ngate:\n  min_audience: 5000\n  posters: [comms@example.org]\n", sink)
	n.log.wait(t, 0, "stormguard started", "admin_api=true")
	cfg := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+n.http+"\ngate:\n  posters: [comms@example.org]\n")
	const who = "newcomer@example.net"
	if r := send(t, n, who, []string{staffList}, gatedMail("mem-1@example.net", who)); r.Code != 550 {
		t.Fatalf("before posters add: %v, want 550", r)
	}
	if out := mustRun(t, "posters", "add", who, "--config", cfg); !strings.Contains(out, "the daemon uses it from the next message") {
		t.Errorf("posters add: %q", out)
	}
	if r := send(t, n, who, []string{staffList}, gatedMail("mem-2@example.net", who)); !r.OK() {
		t.Fatalf("right after posters add: %v, want 250", r)
	}
	out := mustRun(t, "posters", "--config", cfg)
	if flat := strings.Join(strings.Fields(out), " "); !strings.Contains(flat, "comms@example.org config") || !strings.Contains(flat, who+" memory") {
		t.Errorf("posters:\n%s", out)
	}
	if out := mustRun(t, "posters", "delete", who, "--config", cfg); !strings.Contains(out, "removed from the daemon's memory store") {
		t.Errorf("posters delete: %q", out)
	}
	if r := send(t, n, who, []string{staffList}, gatedMail("mem-3@example.net", who)); r.Code != 550 {
		t.Fatalf("right after posters delete: %v, want 550", r)
	}
}
