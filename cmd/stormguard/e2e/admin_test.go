package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"

	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// run runs one stormguard command line and returns its exit code, stdout
// and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errb := run(t, args...)
	if code != 0 {
		t.Fatalf("stormguard %s: exit %d: %s", strings.Join(args, " "), code, errb)
	}
	return out
}

// eventSub is a subscriber on the events channel, as an operator's
// redis-cli SUBSCRIBE or a chat bridge would be.
type eventSub struct {
	ch <-chan *redis.Message
}

func subscribe(t *testing.T, addr string) eventSub {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	sub := c.Subscribe(context.Background(), "stormguard:events")
	if _, err := sub.Receive(context.Background()); err != nil { // the subscription is in place
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { sub.Close(); c.Close() })
	return eventSub{ch: sub.Channel()}
}

// wait returns the first event that matches, within 15s.
func (s eventSub) wait(t *testing.T, match func(events.Event) bool) events.Event {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-s.ch:
			var e events.Event
			if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
				t.Fatalf("event %q is not JSON: %v", m.Payload, err)
			}
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatal("no matching event on stormguard:events within 15s")
		}
	}
}

// webhook is a local HTTP server standing in for Slack or Teams.
type webhook struct {
	*httptest.Server
	events chan events.Event
}

func startWebhook(t *testing.T, handle func(w http.ResponseWriter, e events.Event)) *webhook {
	t.Helper()
	h := &webhook{events: make(chan events.Event, 100)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e events.Event
		if err := json.Unmarshal(body, &e); err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s %q (%v)", r.Method, body, err)
		}
		select {
		case h.events <- e:
		default:
		}
		if handle != nil {
			handle(w, e)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *webhook) wait(t *testing.T, match func(events.Event) bool) events.Event {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e := <-h.events:
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatal("no matching webhook POST within 15s")
		}
	}
}

// scrape reads /metrics into series -> value.
func scrape(t *testing.T, d *daemon) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// stormSetup is one node over Redis and Postfix, a config file for the
// subcommands, an events subscriber and a webhook.
type stormSetup struct {
	redis   string
	node    node
	config  string
	events  eventSub
	webhook *webhook
}

func setupStorm(t *testing.T, extra string) stormSetup {
	t.Helper()
	rd := redisenv.Start(t)
	sink := smtpenv.StartSink(t)
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000")
	wh := startWebhook(t, nil)
	sub := subscribe(t, rd)
	yaml := fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\n", rd)
	n := startNode(t, yaml+fmt.Sprintf("alerts:\n  webhook_url: %s\n  summary_every: 200ms\n", wh.URL)+extra, sink)
	n.log.wait(t, 0, "site settings loaded", "lists=1")
	return stormSetup{redis: rd, node: n, config: writeConfig(t, yaml), events: sub, webhook: wh}
}

// TestOperatingAStorm: a storm through a real Postfix, then what an
// operator sees and does: storms (table, JSON, CSV), show, the events on
// Redis and the webhook, /metrics, and overrides with stormguard and
// redis-cli that change the very next verdict.
func TestOperatingAStorm(t *testing.T) {
	s := setupStorm(t, "")
	n := s.node
	const subject = "Quarterly all-hands"
	root := "ops-storm@example.org"
	thread := string(threadOf(root))
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	accepted, refused := 1, 0
	for i := 1; i <= 12; i++ {
		r := replyAll(t, n, i, root, staffList, subject)
		switch {
		case i <= 10 && r.OK():
			accepted++
		case i > 10 && r.Code == 550 && strings.Contains(r.Text, thread):
			refused++
		default:
			t.Fatalf("reply-all %d: %v", i, r)
		}
	}

	t.Run("storm_detected on stormguard:events and the webhook", func(t *testing.T) {
		e := s.events.wait(t, func(e events.Event) bool { return e.Type == events.TypeStorm })
		if e.Thread != thread || e.Rule != "max_replies" || e.Sender != "user11@example.org" ||
			e.OriginalSender != boss || e.Count != 10 || e.Audience != 3001 || !strings.Contains(e.Text, thread) {
			t.Errorf("storm event %+v", e)
		}
		w := s.webhook.wait(t, func(e events.Event) bool { return e.Type == events.TypeStorm })
		if w.Thread != thread || !strings.Contains(w.Text, "reply-all storm") {
			t.Errorf("webhook storm event %+v", w)
		}
		sum := s.events.wait(t, func(e events.Event) bool { return e.Type == events.TypeBlocked && e.Thread == thread })
		if sum.Refused != 1 || sum.Sender != "user12@example.org" || sum.Action != "reject" {
			t.Errorf("blocked summary %+v, want 1 refusal from user12", sum)
		}
	})

	t.Run("storms --json and show", func(t *testing.T) {
		var views []admin.ThreadView
		if err := json.Unmarshal([]byte(mustRun(t, "storms", "--json", "--config", s.config)), &views); err != nil {
			t.Fatal(err)
		}
		if len(views) != 1 {
			t.Fatalf("storms --json: %+v, want the one storm", views)
		}
		v := views[0]
		if v.Thread != thread || !strings.EqualFold(v.Subject, subject) || v.OriginalSender != boss ||
			v.Replies != 12 || v.Accepted != 10 || v.Blocked != 2 || v.State != admin.StateBlocked ||
			v.StormRule != "max_replies" || v.BlockExpires == nil || time.Until(*v.BlockExpires) < 5*time.Hour {
			t.Errorf("storms --json: %+v", v)
		}
		var shown admin.ThreadView
		if err := json.Unmarshal([]byte(mustRun(t, "show", thread, "--json", "--config", s.config)), &shown); err != nil {
			t.Fatal(err)
		}
		verdicts := map[string]string{}
		for _, x := range shown.Senders {
			verdicts[x.Sender] = x.Verdict + "/" + x.Status
		}
		want := map[string]string{boss: "allowed/noted", "user1@example.org": "allowed/counted",
			"user10@example.org": "allowed/counted", "user11@example.org": "blocked/crossed", "user12@example.org": "blocked/blocked"}
		for k, w := range want {
			if verdicts[k] != w {
				t.Errorf("show: sender %s is %q, want %q (all: %v)", k, verdicts[k], w, verdicts)
			}
		}
		if len(verdicts) != 13 {
			t.Errorf("show lists %d senders, want 13: %v", len(verdicts), verdicts)
		}
		text := mustRun(t, "show", thread, "--config", s.config)
		for _, w := range []string{thread, "user12@example.org", "blocked", boss} {
			if !strings.Contains(text, w) {
				t.Errorf("show (text) lacks %q:\n%s", w, text)
			}
		}
		table := mustRun(t, "storms", "--config", s.config)
		if !strings.Contains(table, thread) || !strings.Contains(table, "THREAD") || !strings.Contains(table, subject) { // as the sender wrote it
			t.Errorf("storms table:\n%s", table)
		}
	})

	t.Run("storms --csv", func(t *testing.T) {
		rows, err := csv.NewReader(strings.NewReader(mustRun(t, "storms", "--csv", "--config", s.config))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		header := []string{"thread", "state", "subject", "original_sender", "started", "last_seen", "audience",
			"replies", "accepted", "blocked", "allowed", "storm_rule", "block_expires", "override", "override_expires"}
		if len(rows) != 2 || !slices.Equal(rows[0], header) {
			t.Fatalf("csv rows %q", rows)
		}
		rec := map[string]string{}
		for i, h := range rows[0] {
			rec[h] = rows[1][i]
		}
		if rec["thread"] != thread || rec["original_sender"] != boss || rec["accepted"] != "10" || rec["blocked"] != "2" || rec["state"] != "blocked" {
			t.Errorf("csv record %v", rec)
		}
	})

	t.Run("metrics match what the SMTP client saw", func(t *testing.T) {
		m := scrape(t, n.daemon)
		check := func(series string, want float64) {
			t.Helper()
			if m[series] != want {
				t.Errorf("%s = %v, want %v", series, m[series], want)
			}
		}
		check(`stormguard_decisions_total{action="accept",rule="original"}`, 1)
		check(`stormguard_decisions_total{action="accept",rule="counted"}`, 10)
		check(`stormguard_decisions_total{action="reject",rule="max_replies"}`, 1)
		check(`stormguard_decisions_total{action="reject",rule="blocked"}`, 1)
		check(`stormguard_storms_detected_total`, 1)
		check(`stormguard_blocked_threads`, 1)
		check(`stormguard_store_errors_total{op="record"}`, 0)
		check(`stormguard_fallbacks_total`, 0)
		var sumAccepted, sumRefused float64
		for k, v := range m {
			if strings.HasPrefix(k, "stormguard_decisions_total{action=\"accept\"") {
				sumAccepted += v
			} else if strings.HasPrefix(k, "stormguard_decisions_total{") {
				sumRefused += v
			}
		}
		if int(sumAccepted) != accepted || int(sumRefused) != refused {
			t.Errorf("metrics: %v accepted, %v refused; the SMTP client saw %d and %d", sumAccepted, sumRefused, accepted, refused)
		}
		if m[`stormguard_store_call_duration_seconds_count{op="record"}`] != 13 {
			t.Errorf("record calls observed: %v, want 13", m[`stormguard_store_call_duration_seconds_count{op="record"}`])
		}
	})

	next := 20
	reply := func() int {
		t.Helper()
		next++
		return replyAll(t, n, next, root, staffList, subject).Code
	}
	// 3s: the command is a process of its own, and the reply must come
	// before the override expires even on a busy machine.
	t.Run("allow --for 3s lets the next reply through, then expires", func(t *testing.T) {
		out := mustRun(t, "allow", thread, "--for", "3s", "--config", s.config)
		if !strings.Contains(out, "allow for 3s") {
			t.Errorf("allow said %q", out)
		}
		if e := s.events.wait(t, func(e events.Event) bool { return e.Type == events.TypeOverride }); e.Thread != thread || e.Override != "allow" || e.Expires == nil {
			t.Errorf("override event %+v", e)
		}
		if c := reply(); c != 250 {
			t.Fatalf("reply after allow: %d, want 250", c)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			var v admin.ThreadView
			if err := json.Unmarshal([]byte(mustRun(t, "show", thread, "--json", "--config", s.config)), &v); err != nil {
				t.Fatal(err)
			}
			if v.Override == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the allow override is still there after 10s: %+v", v)
			}
			time.Sleep(50 * time.Millisecond) // polling a Redis TTL, bounded above
		}
		if c := reply(); c != 550 {
			t.Fatalf("reply after the allow expired: %d, want 550", c)
		}
	})
	t.Run("reset starts counting afresh", func(t *testing.T) {
		mustRun(t, "reset", thread, "--config", s.config)
		if c := reply(); c != 250 {
			t.Fatalf("reply after reset: %d, want 250", c)
		}
		if out := mustRun(t, "storms", "--json", "--config", s.config); strings.TrimSpace(out) != "[]" {
			t.Errorf("storms after reset: %s, want none", out)
		}
		if out := mustRun(t, "storms", "--all", "--json", "--config", s.config); !strings.Contains(out, thread) {
			t.Errorf("storms --all after reset lacks the thread: %s", out)
		}
	})
	t.Run("block refuses the next reply", func(t *testing.T) {
		mustRun(t, "block", thread, "--config", s.config)
		if c := reply(); c != 550 {
			t.Fatalf("reply after block: %d, want 550", c)
		}
	})
	key := "stormguard:{" + thread + "}:override"
	t.Run("redis-cli overrides change the next verdict", func(t *testing.T) {
		redisenv.CLI(t, s.redis, "DEL", key)
		if c := reply(); c != 250 {
			t.Fatalf("after redis-cli DEL override: %d, want 250", c)
		}
		redisenv.CLI(t, s.redis, "SET", key, "block")
		if c := reply(); c != 550 {
			t.Fatalf("after redis-cli SET override block: %d, want 550", c)
		}
		redisenv.CLI(t, s.redis, "SET", key, "allow", "EX", "3600")
		if c := reply(); c != 250 {
			t.Fatalf("after redis-cli SET override allow EX 3600: %d, want 250", c)
		}
		redisenv.CLI(t, s.redis, "DEL", key)
	})
	t.Run("redis-cli DEL block lifts a storm", func(t *testing.T) {
		for reply() == 250 { // counts up to the limit again, then crosses
			if next > 60 {
				t.Fatal("the thread never crossed again")
			}
		}
		if c := reply(); c != 550 {
			t.Fatalf("blocked thread: %d, want 550", c)
		}
		redisenv.CLI(t, s.redis, "DEL", "stormguard:{"+thread+"}:block", "stormguard:{"+thread+"}:replies")
		if c := reply(); c != 250 {
			t.Fatalf("after redis-cli DEL block and replies: %d, want 250", c)
		}
	})
}

func TestListsAndModeCommands(t *testing.T) {
	rd := redisenv.Start(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\nlists:\n  from-config@example.org: 40\n", rd))
	if out := mustRun(t, "lists", "set", "All-Staff@Example.org", "850000", "--config", cfg); !strings.Contains(out, "all-staff@example.org: 850000") {
		t.Errorf("lists set: %q", out)
	}
	if got := redisenv.CLI(t, rd, "HGET", "stormguard:lists", "all-staff@example.org"); got != "850000" {
		t.Errorf("redis-cli HGET = %q", got)
	}
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", "team@example.org", "12")
	out := mustRun(t, "lists", "--config", cfg)
	for _, w := range []string{"all-staff@example.org  850000  redis", "team@example.org", "from-config@example.org  40  config"} {
		if !strings.Contains(strings.Join(strings.Fields(out), "  "), strings.Join(strings.Fields(w), "  ")) {
			t.Errorf("lists lacks %q:\n%s", w, out)
		}
	}
	mustRun(t, "lists", "delete", "team@example.org", "--config", cfg)
	if got := redisenv.CLI(t, rd, "HEXISTS", "stormguard:lists", "team@example.org"); got != "0" {
		t.Errorf("after lists delete, HEXISTS = %q", got)
	}
	if code, _, errb := run(t, "lists", "delete", "team@example.org", "--config", cfg); code == 0 || !strings.Contains(errb, "not registered") {
		t.Errorf("deleting an absent list: exit %d %q", code, errb)
	}

	sub := subscribe(t, rd)
	mustRun(t, "mode", "monitor", "--config", cfg)
	if got := redisenv.CLI(t, rd, "GET", "stormguard:mode"); got != "monitor" {
		t.Errorf("stormguard:mode = %q after mode monitor", got)
	}
	if e := sub.wait(t, func(e events.Event) bool { return e.Type == events.TypeMode }); e.Mode != "monitor" {
		t.Errorf("mode event %+v", e)
	}
	if out := mustRun(t, "mode", "--config", cfg); !strings.HasPrefix(out, "monitor") {
		t.Errorf("mode: %q", out)
	}
	mustRun(t, "mode", "default", "--config", cfg)
	if got := redisenv.CLI(t, rd, "EXISTS", "stormguard:mode"); got != "0" {
		t.Errorf("stormguard:mode still set after mode default")
	}
}

// TestAdminErrors: one clear line and a non-zero exit for each mistake.
func TestAdminErrors(t *testing.T) {
	rd := redisenv.Start(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\n", rd))
	dead := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [127.0.0.1:%d]\n", testenv.FreePort(t)))
	deadPort := testenv.FreePort(t)
	memory := writeConfig(t, fmt.Sprintf("store:\n  backend: memory\nhttp:\n  listen: 127.0.0.1:%d\n", deadPort))
	noHTTP := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: \"\"\n")
	adminOff := writeConfig(t, "store:\n  backend: memory\nhttp:\n  admin: false\n")
	wildcard := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: 0.0.0.0:9357\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"memory store, daemon down", []string{"storms", "--config", memory}, fmt.Sprintf(
			"cannot reach the stormguard daemon at http://127.0.0.1:%d (memory store: the admin commands talk to the running daemon): dial tcp", deadPort)},
		{"memory store show, daemon down", []string{"show", "0123456789abcdef", "--config", memory}, "cannot reach the stormguard daemon"},
		{"memory store allow, daemon down", []string{"allow", "0123456789abcdef", "--for", "1h", "--config", memory}, "cannot reach the stormguard daemon"},
		{"memory store, no http", []string{"storms", "--config", noHTTP}, "http.listen is empty"},
		{"memory store, admin off", []string{"mode", "--config", adminOff}, "http.admin is false"},
		{"memory store, wildcard listen", []string{"lists", "--config", wildcard}, "not a loopback address and http.admin is auto"},
		{"bad thread id", []string{"show", "not-a-thread", "--config", cfg}, `bad thread id "not-a-thread"`},
		{"bad thread id allow", []string{"allow", "{3F9A}", "--config", cfg}, "bad thread id"},
		{"unknown thread", []string{"show", "0123456789abcdef", "--config", cfg}, "thread 0123456789abcdef: unknown"},
		{"unknown thread block", []string{"block", "0123456789abcdef", "--config", cfg}, "unknown"},
		{"unknown thread reset", []string{"reset", "0123456789abcdef", "--config", cfg}, "unknown"},
		{"bad duration", []string{"allow", "0123456789abcdef", "--for", "soon", "--config", cfg}, `invalid argument "soon" for "--for"`},
		{"negative duration", []string{"block", "0123456789abcdef", "--for", "-5m", "--config", cfg}, "must be positive"},
		{"unreachable redis", []string{"storms", "--config", dead}, "cannot reach Redis at 127.0.0.1:"},
		{"bad list size", []string{"lists", "set", "all@example.org", "many", "--config", cfg}, "want a positive whole number"},
		{"bad mode", []string{"mode", "panic", "--config", cfg}, "want enforce, monitor, off or default"},
		{"json and csv", []string{"storms", "--json", "--csv", "--config", cfg}, "exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errb := run(t, tc.args...)
			if code == 0 || !strings.Contains(errb, tc.want) || strings.Count(strings.TrimSpace(errb), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want non-zero and one line with %q", code, errb, tc.want)
			}
		})
	}
}
