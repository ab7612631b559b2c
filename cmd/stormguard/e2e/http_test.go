package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyzWhenRedisDies: /readyz says ready while Redis answers; when
// Redis is shut down, a node with on_error=accept stays ready and says the
// fallback is active, one with on_error=tempfail turns unready.
func TestReadyzWhenRedisDies(t *testing.T) {
	rd := redisenv.Start(t)
	yaml := fmt.Sprintf("store:\n  backend: redis\n  on_error: %%s\nredis:\n  addrs: [%s]\n  timeout: 300ms\n", rd)
	accept := startDaemon(t, fmt.Sprintf(yaml, "accept"))
	tempfail := startDaemon(t, fmt.Sprintf(yaml, "tempfail"))
	memory := startDaemon(t, "")
	for _, d := range []*daemon{accept, tempfail, memory} {
		if code, body := get(t, "http://"+d.http+"/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		if code, body := get(t, "http://"+d.http+"/readyz"); code != 200 || !strings.HasPrefix(body, "ok") {
			t.Errorf("/readyz with Redis up: %d %q", code, body)
		}
	}

	_, _ = redisenv.CLIErr(rd, "SHUTDOWN", "NOSAVE") // the connection drops: no reply to check
	if _, err := redisenv.CLIErr(rd, "PING"); err == nil {
		t.Fatal("Redis still answers after SHUTDOWN")
	}
	if code, body := get(t, "http://"+accept.http+"/readyz"); code != 200 || !strings.Contains(body, "fallback active") {
		t.Errorf("/readyz, on_error=accept, Redis down: %d %q, want 200 fallback active", code, body)
	}
	if code, body := get(t, "http://"+tempfail.http+"/readyz"); code != 503 || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz, on_error=tempfail, Redis down: %d %q, want 503", code, body)
	}
	if code, _ := get(t, "http://"+memory.http+"/readyz"); code != 200 {
		t.Errorf("/readyz, memory store: %d", code)
	}
}

// TestWebhookNeverDelaysMail: a webhook that hangs, or that answers 500,
// never holds up an SMTP reply; the Redis channel still gets the event,
// and the failing webhook is retried.
func TestWebhookNeverDelaysMail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(hits int64, release <-chan struct{}, w http.ResponseWriter)
	}{
		{"hangs", func(_ int64, release <-chan struct{}, _ http.ResponseWriter) { <-release }},
		{"500 then 200", func(hits int64, _ <-chan struct{}, w http.ResponseWriter) {
			if hits <= 2 {
				w.WriteHeader(http.StatusInternalServerError)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int64
			release := make(chan struct{})
			wh := startWebhook(t, func(w http.ResponseWriter, _ events.Event) { tc.handle(hits.Add(1), release, w) })
			t.Cleanup(func() { close(release) }) // runs before the server closes
			rd := redisenv.Start(t)
			redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000")
			sub := subscribe(t, rd)
			yaml := fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\n"+
				"policy:\n  max_replies: 2\nalerts:\n  webhook_url: %s\n  webhook_timeout: 30s\n  summary_every: 100ms\n", rd, wh.URL)
			n := startNode(t, yaml, smtpenv.StartSink(t))
			n.log.wait(t, 0, "site settings loaded", "lists=1")

			root := "hang-" + strings.ReplaceAll(tc.name, " ", "-") + "@example.org"
			send(t, n, boss, []string{staffList}, originalMail(root, staffList, "Hello"))
			var slowest time.Duration
			for i := 1; i <= 8; i++ {
				start := time.Now()
				r := replyAll(t, n, i, root, staffList, "Hello")
				slowest = max(slowest, time.Since(start))
				if (i <= 2) != r.OK() {
					t.Fatalf("reply %d: %v", i, r)
				}
			}
			t.Logf("slowest SMTP transaction with a webhook that %s: %v", tc.name, slowest)
			if slowest > 3*time.Second {
				t.Errorf("an SMTP transaction took %v while the webhook %s (webhook_timeout 30s)", slowest, tc.name)
			}
			if e := sub.wait(t, func(e events.Event) bool { return e.Type == events.TypeStorm }); e.Thread != string(threadOf(root)) {
				t.Errorf("storm event on Redis: %+v", e)
			}
			if tc.name == "500 then 200" {
				wh.wait(t, func(e events.Event) bool { return e.Type == events.TypeStorm }) // the first try
				deadline := time.Now().Add(10 * time.Second)
				for hits.Load() < 3 { // two 500s, then the retry that succeeds
					if time.Now().After(deadline) {
						t.Fatalf("webhook hit %d times, want a retry after each 500", hits.Load())
					}
					time.Sleep(20 * time.Millisecond) // waiting out the backoff, bounded above
				}
			}
		})
	}
}
