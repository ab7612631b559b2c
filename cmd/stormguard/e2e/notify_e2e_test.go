package e2e

import (
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

const adminAddr = "postmaster@example.org"

// startNotifyNode is a node whose stormguard mails its notices through its
// own Postfix: the milter port is chosen first, Postfix started pointing at
// it, then the daemon with notify.smtp at Postfix (notifyYAML is the notify
// section's body, indented; "%s" in it is Postfix's address).
func startNotifyNode(t *testing.T, yaml, notifyYAML string, sink *smtpenv.Sink) node {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: "inet:" + addr})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.Log())
		}
	})
	if strings.Contains(notifyYAML, "%s") {
		notifyYAML = fmt.Sprintf(notifyYAML, pf.Addr)
	}
	d := startDaemonAt(t, addr, httpAddr, "", yaml+"notify:\n"+notifyYAML)
	return node{daemon: d, postfix: pf}
}

// waitMetric polls the daemon's /metrics until series reaches want.
func waitMetric(t *testing.T, d *daemon, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := scrape(t, d)[series]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", series, got, want)
		}
		time.Sleep(50 * time.Millisecond) // polling an external effect
	}
}

func isNotice(m smtpenv.SinkMessage) bool {
	return m.HasRcpt(adminAddr) && m.Header("Auto-Submitted") == "auto-generated"
}

const (
	mailSent      = `stormguard_events_total{outlet="mail",result="sent"}`
	mailDuplicate = `stormguard_events_total{outlet="mail",result="duplicate"}`
	mailFailed    = `stormguard_events_total{outlet="mail",result="failed"}`
)

// TestNotifyThroughPostfix: a storm through a real Postfix (Redis store,
// max_replies 3) mails one notice to the admin address through that
// Postfix, which relays it to the sink; the refused replies after it mail
// nothing; and when the thread storms again on a second node (block lifted
// with redis-cli), the site-wide claim keeps that node from mailing a
// second notice.
func TestNotifyThroughPostfix(t *testing.T) {
	redis := redisenv.Start(t)
	sink := smtpenv.StartSink(t)
	redisenv.CLI(t, redis, "HSET", "stormguard:lists", staffList, "3000")
	yaml := fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 2s\npolicy:\n  max_replies: 3\n", redis)
	notify := "  to: [" + adminAddr + "]\n  from: stormguard@mx.example.org\n  smtp: %s\n"
	n := startNotifyNode(t, yaml, notify, sink)
	n.log.wait(t, 0, "site settings loaded", "lists=1")

	const subject = "Quarterly <b>numbers</b>\x1b[2J"
	root := "notify-1@example.org"
	thread := string(threadOf(root))
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	const maxReplies = 3
	for i := 1; i <= maxReplies+3; i++ {
		r := replyAll(t, n, i, root, staffList, subject)
		if want := i <= maxReplies; r.OK() != want {
			t.Fatalf("reply-all %d: %v, want OK %v", i, r, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	notice, err := sink.Wait(ctx, isNotice)
	if err != nil {
		t.Fatalf("no notice reached the sink: %v\n%s", err, n.postfix.Log())
	}
	waitMetric(t, n.daemon, mailSent, 1)
	if got := notice.Header("X-Stormguard-Thread"); got != thread {
		t.Errorf("notice for thread %q, want %s", got, thread)
	}
	// It went through this Postfix (and its milter, as a small message).
	if !strings.Contains(string(notice.Data), "Received: from ") || !strings.Contains(n.postfix.Log(), "from=<stormguard@mx.example.org>") {
		t.Errorf("notice did not come through the test Postfix:\n%s", notice.Data)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(strings.NewReader(notice.Body())))
	for _, want := range []string{"Thread:       " + thread, "max_replies crossed: 3 replies to everyone counted, 9003 deliveries", "the reply by user4@example.org to 3001 mailboxes", "stormguard allow " + thread,
		"redis-cli SET 'stormguard:{" + thread + "}:override' allow EX 7200", "Started by:   " + boss} {
		if !strings.Contains(string(body), want) {
			t.Errorf("notice body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(string(body), "\x1b") {
		t.Errorf("notice body carries the subject's terminal escape")
	}
	t.Logf("notice as the sink got it:\n%s", notice.Data)

	// The thread storms again, on a second node: the block is lifted by
	// hand and max_replies+1 more replies go through node 2.
	n2 := startNotifyNode(t, yaml, notify, sink)
	n2.log.wait(t, 0, "site settings loaded", "lists=1")
	redisenv.CLI(t, redis, "DEL", "stormguard:{"+thread+"}:block", "stormguard:{"+thread+"}:replies")
	for i := 10; i <= 10+maxReplies; i++ {
		r := replyAll(t, n2, i, root, staffList, subject)
		if want := i < 10+maxReplies; r.OK() != want {
			t.Fatalf("node 2 reply-all %d: %v, want OK %v", i, r, want)
		}
	}
	n2.log.wait(t, 0, "rule=max_replies", "thread="+thread)
	waitMetric(t, n2.daemon, mailDuplicate, 1) // the claim was node 1's: nothing in flight
	if s := scrape(t, n2.daemon); s[mailSent] != 0 {
		t.Errorf("node 2 sent %v notices", s[mailSent])
	}
	if s := scrape(t, n.daemon); s[mailSent] != 1 || s[mailFailed] != 0 {
		t.Errorf("node 1: sent %v failed %v, want 1 and 0", s[mailSent], s[mailFailed])
	}
	var notices int
	for _, m := range sink.Messages() {
		if isNotice(m) {
			notices++
		}
	}
	if notices != 1 {
		t.Errorf("sink got %d notices, want exactly 1", notices)
	}
	// The claim is in Redis, held by node 1 for policy.block_for.
	if ttl := redisenv.CLI(t, redis, "PTTL", "stormguard:{"+thread+"}:notified"); strings.HasPrefix(ttl, "-") {
		t.Errorf("notified key PTTL %s", ttl)
	}
}

// TestNotifyUnreachableDelaysNothing: with notify.smtp at a closed port,
// or at a server that accepts and never answers, every decision of a
// storm through Postfix comes as fast as without notices: each SMTP
// transaction well under notify.timeout, though a notice on the decision
// path would take notify.timeout at least. With the closed port the
// notice is counted as failed.
func TestNotifyUnreachableDelaysNothing(t *testing.T) {
	silent, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // kept open, never answered
		}
	}()
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	const timeout = 10 * time.Second
	for _, tc := range []struct{ name, smtp string }{{"closed port", closedAddr}, {"silent server", silent.Addr().String()}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := smtpenv.StartSink(t)
			yaml := "lists:\n  " + staffList + ": 3000\npolicy:\n  max_replies: 3\n"
			n := startNotifyNode(t, yaml, fmt.Sprintf("  to: [%s]\n  smtp: %s\n  timeout: %s\n", adminAddr, tc.smtp, timeout), sink)
			root := "unreachable-" + strings.ReplaceAll(tc.name, " ", "-") + "@example.org"
			if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, "Hi")); !r.OK() {
				t.Fatalf("original: %v", r)
			}
			var slowest time.Duration
			for i := 1; i <= 8; i++ {
				start := time.Now()
				r := replyAll(t, n, i, root, staffList, "Hi")
				took := time.Since(start)
				slowest = max(slowest, took)
				if want := i <= 3; r.OK() != want {
					t.Fatalf("reply-all %d: %v, want OK %v", i, r, want)
				}
				if took > timeout/2 {
					t.Errorf("reply-all %d took %s through Postfix, notify.timeout is %s", i, took, timeout)
				}
			}
			t.Logf("%s: slowest of 8 SMTP transactions (4th crossed, 5-8 refused) %s", tc.name, slowest)
			if tc.name == "closed port" {
				waitMetric(t, n.daemon, mailFailed, 1) // 3 tries, 1s and 2s apart
			}
		})
	}
}
