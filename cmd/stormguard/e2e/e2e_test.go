package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/policy"
)

// logWatch collects the daemon's log lines and lets a test wait for one.
type logWatch struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func newLogWatch() (*logWatch, io.WriteCloser) {
	w := &logWatch{changed: make(chan struct{})}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w, pw
}

// wait blocks until a line after the first `from` lines contains every
// part, and returns its index.
func (w *logWatch) wait(t *testing.T, from int, parts ...string) int {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		w.mu.Lock()
		for i := from; i < len(w.lines); i++ {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(w.lines[i], p)
			}
			if ok {
				w.mu.Unlock()
				return i
			}
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no daemon log line with %q; log:\n%s", parts, w.String())
		}
	}
}

func (w *logWatch) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// daemon is one stormguard serve running as a process of its own.
type daemon struct {
	addr string
	http string // HOST:PORT of /metrics, /healthz, /readyz
	log  *logWatch
}

// startDaemon runs `stormguard serve --config FILE` with the given YAML
// (listen is added) until the test ends.
func startDaemon(t *testing.T, yaml string) *daemon {
	t.Helper()
	return startDaemonHTTP(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "", yaml)
}

// startDaemonHTTP is startDaemon with http.listen httpAddr and the other
// http settings in httpYAML (indented: "  admin: true\n").
func startDaemonHTTP(t *testing.T, httpAddr, httpYAML, yaml string) *daemon {
	t.Helper()
	return startDaemonAt(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), httpAddr, httpYAML, yaml)
}

// startDaemonAt is startDaemonHTTP with the milter on addr (HOST:PORT),
// for a test that had to tell an MTA the address first.
func startDaemonAt(t *testing.T, addr, httpAddr, httpYAML, yaml string) *daemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stormguard.yaml")
	if err := os.WriteFile(path, []byte("listen: inet:"+addr+"\nhttp:\n  listen: "+httpAddr+"\n"+httpYAML+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	watch, logw := newLogWatch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", path}, io.Discard, logw) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d; log:\n%s", code, watch.String())
		}
		logw.Close()
		if t.Failed() {
			t.Logf("daemon %s log:\n%s", addr, watch.String())
		}
	})
	watch.wait(t, 0, "stormguard started")
	return &daemon{addr: addr, http: httpAddr, log: watch}
}

// node is one mail node: a stormguard and a Postfix whose smtpd_milters
// points at it, relaying accepted mail to sink.
type node struct {
	*daemon
	postfix *postfixenv.Server
}

func startNode(t *testing.T, yaml string, sink *smtpenv.Sink) node {
	t.Helper()
	d := startDaemon(t, yaml)
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: "inet:" + d.addr})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.Log())
		}
	})
	return node{daemon: d, postfix: pf}
}

const (
	staffList = "all-staff@example.org"
	boss      = "boss@example.org"
)

func originalMail(id, list, subject string) []byte {
	return smtpenv.NewMessage().
		Add("From", "The Boss <"+boss+">").
		Add("To", "All staff <"+list+">").
		Add("Subject", subject).
		Add("Message-ID", "<"+id+">").
		SetBody("Please ignore.\n").Bytes()
}

func replyAllMail(n int, root, list, subject string) []byte {
	return smtpenv.NewMessage().
		Add("From", fmt.Sprintf("User %d <user%d@example.org>", n, n)).
		Add("To", list+", "+boss).
		Add("Subject", "RE: "+subject).
		Add("Message-ID", fmt.Sprintf("<reply-%d-%s>", n, root)).
		Add("In-Reply-To", "<"+root+">").
		Add("References", "<"+root+">").
		SetBody("Please remove me from this list.\n").Bytes()
}

func send(t *testing.T, n node, from string, rcpts []string, data []byte) smtpenv.Reply {
	t.Helper()
	r, err := smtpenv.Send(n.postfix.Addr, from, rcpts, data)
	if err != nil {
		t.Fatalf("smtp: %v", err)
	}
	return r
}

func replyAll(t *testing.T, n node, i int, root, list, subject string) smtpenv.Reply {
	t.Helper()
	return send(t, n, fmt.Sprintf("user%d@example.org", i), []string{list, boss}, replyAllMail(i, root, list, subject))
}

func threadOf(id string) policy.ThreadID {
	norm, _ := policy.ParseMessageID("<" + id + ">")
	return policy.MessageIDKey(norm).Thread()
}

// TestEndToEndThroughPostfix runs a storm through a real Postfix with
// smtpd_milters pointing at stormguard and the Redis store, and steers it
// with real redis-cli commands.
func TestEndToEndThroughPostfix(t *testing.T) {
	redis := redisenv.Start(t)
	sink := smtpenv.StartSink(t)
	redisenv.CLI(t, redis, "HSET", "stormguard:lists", staffList, "3000")
	yaml := fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\n", redis)
	n := startNode(t, yaml, sink)
	n.log.wait(t, 0, "site settings loaded", "lists=1")

	const subject = "Test message, please ignore"
	root := "storm-1@example.org"
	thread := threadOf(root)
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}

	const maxReplies = 10 // the default policy.max_replies
	for i := 1; i <= maxReplies; i++ {
		if r := replyAll(t, n, i, root, staffList, subject); !r.OK() {
			t.Fatalf("reply-all %d of %d: %v, want 250", i, maxReplies, r)
		}
	}
	r := replyAll(t, n, maxReplies+1, root, staffList, subject)
	if r.Code != 550 || !strings.Contains(r.Text, "5.7.1") || !strings.Contains(r.Text, string(thread)) {
		t.Fatalf("reply-all %d: %v, want 550 5.7.1 naming thread %s", maxReplies+1, r, thread)
	}
	t.Logf("refusal seen by the SMTP client: %d %s", r.Code, r.Text)

	// A reply to the original sender alone is small: it passes.
	private := smtpenv.NewMessage().Add("From", "<user99@example.org>").Add("To", boss).
		Add("Subject", "RE: "+subject).Add("Message-ID", "<private-99@example.org>").
		Add("In-Reply-To", "<"+root+">").Add("References", "<"+root+">").SetBody("Thanks.\n").Bytes()
	if r := send(t, n, "user99@example.org", []string{boss}, private); !r.OK() {
		t.Fatalf("reply to the sender alone: %v, want 250", r)
	}

	t.Run("override allow with redis-cli", func(t *testing.T) {
		redisenv.CLI(t, redis, "SET", "stormguard:{"+string(thread)+"}:override", "allow", "EX", "3600")
		if r := replyAll(t, n, 20, root, staffList, subject); !r.OK() {
			t.Fatalf("after override allow: %v, want 250", r)
		}
		redisenv.CLI(t, redis, "DEL", "stormguard:{"+string(thread)+"}:override")
		if r := replyAll(t, n, 21, root, staffList, subject); r.Code != 550 {
			t.Fatalf("after deleting the override: %v, want 550 (the thread is still blocked)", r)
		}
	})

	t.Run("second node with action tempfail shares the block", func(t *testing.T) {
		n2 := startNode(t, yaml+"policy:\n  action: tempfail\n", sink)
		r := replyAll(t, n2, 30, root, staffList, subject)
		if r.Code != 451 || !strings.HasPrefix(r.Text, "4.7.1") || !strings.Contains(r.Text, string(thread)) {
			t.Fatalf("node 2: %v, want 451 4.7.1 naming thread %s", r, thread)
		}
	})

	t.Run("monitor mode with redis-cli", func(t *testing.T) {
		from := n.log.len()
		redisenv.CLI(t, redis, "SET", "stormguard:mode", "monitor")
		n.log.wait(t, from, "site settings loaded", "mode=monitor")
		r := replyAll(t, n, 40, root, staffList, subject)
		if !r.OK() {
			t.Fatalf("monitor mode: %v, want 250", r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		msg, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool {
			return strings.Contains(m.Header("Message-ID"), "reply-40-")
		})
		if err != nil {
			t.Fatalf("monitored reply never delivered: %v", err)
		}
		tag := msg.Header("X-Stormguard")
		if !strings.Contains(tag, "thread="+string(thread)) || !strings.Contains(tag, "rule=blocked") {
			t.Fatalf("delivered copy has X-Stormguard %q, want thread=%s rule=blocked", tag, thread)
		}
		from = n.log.len()
		redisenv.CLI(t, redis, "SET", "stormguard:mode", "enforce")
		n.log.wait(t, from, "site settings loaded", "mode=enforce")
	})

	t.Run("NHS-sized list: the second reply-all is refused", func(t *testing.T) {
		const nhs = "nhs-all@nhs.example.org"
		from := n.log.len()
		redisenv.CLI(t, redis, "HSET", "stormguard:lists", nhs, "850000")
		n.log.wait(t, from, "site settings loaded", "lists=2")
		root := "nhs-test@nhs.example.org"
		const subject = "Test"
		if r := send(t, n, boss, []string{nhs}, originalMail(root, nhs, subject)); !r.OK() {
			t.Fatalf("original: %v", r)
		}
		if r := replyAll(t, n, 1, root, nhs, subject); !r.OK() {
			t.Fatalf("first reply-all: %v, want 250", r)
		}
		r := replyAll(t, n, 2, root, nhs, subject)
		if r.Code != 550 || !strings.Contains(r.Text, string(threadOf(root))) {
			t.Fatalf("second reply-all to 850,000: %v, want 550", r)
		}
		n.log.wait(t, 0, "rule=delivery_budget", "thread="+string(threadOf(root)))
	})

	// Every accepted message reached the sink; no refused one did.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool {
		return strings.Contains(m.Header("Message-ID"), "reply-10-storm-1")
	}); err != nil {
		t.Fatalf("the 10th reply-all was accepted but not delivered: %v", err)
	}
	for _, m := range sink.Messages() {
		if id := m.Header("Message-ID"); strings.Contains(id, "reply-11-storm-1") {
			t.Errorf("refused reply %s was delivered", id)
		}
	}
}
