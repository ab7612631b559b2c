package milter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

const listAddr = "all-staff@example.org"

// testConfig: a 3000-member list, 3 replies per window.
func testConfig() Config {
	return Config{
		Policy: policy.Config{
			MinAudience:          2500,
			AutoReplyMaxAudience: 100,
			Action:               policy.ConfigReject,
			Limits:               policy.Limits{MaxReplies: 3, DeliveryBudget: 1000000, Window: time.Hour, BlockFor: 6 * time.Hour},
		},
		RejectText:   "5.7.1 Too many replies to everyone (thread {thread})",
		TempfailText: "4.7.1 Too many replies to everyone (thread {thread})",
		Header:       "X-Stormguard",
		OnError:      OnErrorAccept,
		StoreTimeout: 200 * time.Millisecond,
		Retention:    24 * time.Hour,
		Refresh:      time.Second,
		Lists:        map[string]int{listAddr: 3000},
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	f    *Filter
	addr string
	logs *syncBuffer
}

// startServer runs a real milter server on a loopback TCP port.
func startServer(t *testing.T, cfg Config, st, fallback store.Store) *harness {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := NewFilter(cfg, st, fallback, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("inet:127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return &harness{f: f, addr: ln.Addr().String(), logs: logs}
}

// mail is one message as an MTA would hand it to the milter.
type mail struct {
	from    string
	rcpts   []string
	headers [][2]string
}

// result is what the milter answered at the stage that decided.
type result struct {
	act  *gomilter.Action
	mods []gomilter.ModifyAction
}

func (r result) code() uint16 {
	if r.act.Type == gomilter.ActionRejectWithCode || r.act.Type == gomilter.ActionReject || r.act.Type == gomilter.ActionTempFail {
		return r.act.SMTPCode
	}
	return 250
}

func (r result) header(name string) string {
	for _, m := range r.mods {
		if m.Type == gomilter.ActionAddHeader && strings.EqualFold(m.HeaderName, name) {
			return m.HeaderValue
		}
	}
	return ""
}

func newSession(t *testing.T, addr string) *gomilter.ClientSession {
	t.Helper()
	return newSessionWith(t, addr, gomilter.NewMacroBag())
}

// newSessionWith is newSession with the MTA's macros (e.g. {auth_authen}).
func newSessionWith(t *testing.T, addr string, macros *gomilter.MacroBag) *gomilter.ClientSession {
	t.Helper()
	s, err := gomilter.NewClient("tcp", addr).Session(macros)
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 25000, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return s
}

// send runs one message through an open session like Postfix does: MAIL,
// RCPTs, headers, end of headers, and end of message unless already decided.
func send(t *testing.T, s *gomilter.ClientSession, m mail) result {
	t.Helper()
	check := func(act *gomilter.Action, err error, stage string) bool {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		return act.StopProcessing() || act.Type == gomilter.ActionAccept
	}
	act, err := s.Mail(m.from, "")
	if check(act, err, "mail") {
		t.Fatalf("decided at MAIL: %v", act)
	}
	for _, r := range m.rcpts {
		act, err = s.Rcpt(r, "")
		if check(act, err, "rcpt") {
			t.Fatalf("decided at RCPT %s: %v (a milter must continue at RCPT)", r, act)
		}
	}
	if _, err := s.DataStart(); err != nil {
		t.Fatal(err)
	}
	for _, h := range m.headers {
		act, err = s.HeaderField(h[0], h[1], nil)
		if check(act, err, "header") {
			t.Fatalf("decided at header %s: %v", h[0], act)
		}
	}
	act, err = s.HeaderEnd()
	if check(act, err, "eoh") {
		if err := s.Abort(nil); err != nil { // the MTA moves on to the next message
			t.Fatal(err)
		}
		return result{act: act}
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader("body\r\n")) // not sent: the filter asks for no body
	if err != nil {
		t.Fatalf("eom: %v", err)
	}
	return result{act: act, mods: mods}
}

func original(id string) mail {
	return mail{
		from:  "boss@example.org",
		rcpts: []string{listAddr},
		headers: [][2]string{
			{"From", " Boss <boss@example.org>"},
			{"To", " All staff <" + listAddr + ">"},
			{"Subject", " Test message, please ignore"},
			{"Message-ID", " <" + id + ">"},
		},
	}
}

func replyAll(i int, root string) mail {
	sender := fmt.Sprintf("user%d@example.org", i)
	return mail{
		from:  sender,
		rcpts: []string{listAddr, "boss@example.org"},
		headers: [][2]string{
			{"From", " <" + sender + ">"},
			{"To", " " + listAddr + ", boss@example.org"},
			{"Subject", " RE: Test message, please ignore"},
			{"Message-ID", fmt.Sprintf(" <reply-%d@example.org>", i)},
			{"In-Reply-To", " <" + root + ">"},
			{"References", " <" + root + ">"},
		},
	}
}

func replySender(i int, root string) mail {
	m := replyAll(i, root)
	m.rcpts = []string{"boss@example.org"}
	m.headers[1] = [2]string{"To", " boss@example.org"}
	m.headers[3] = [2]string{"Message-ID", fmt.Sprintf(" <private-%d@example.org>", i)}
	return m
}

func TestStormIsStoppedOverTheMilterProtocol(t *testing.T) {
	h := startServer(t, testConfig(), store.NewMemory(), nil)
	s := newSession(t, h.addr)
	root := "orig-1@example.org"
	if got := send(t, s, original(root)).code(); got != 250 {
		t.Fatalf("original: got %d, want 250", got)
	}
	for i := 1; i <= 3; i++ {
		if got := send(t, newSession(t, h.addr), replyAll(i, root)).code(); got != 250 {
			t.Fatalf("reply-all %d: got %d, want 250", i, got)
		}
	}
	r := send(t, newSession(t, h.addr), replyAll(4, root))
	thread := policy.MessageIDKey(root).Thread()
	if r.code() != 550 || !strings.Contains(r.act.SMTPReply, "5.7.1") || !strings.Contains(r.act.SMTPReply, string(thread)) {
		t.Fatalf("reply-all 4: got %d %q, want 550 5.7.1 naming thread %s", r.code(), r.act.SMTPReply, thread)
	}
	if got := send(t, newSession(t, h.addr), replySender(5, root)).code(); got != 250 {
		t.Fatalf("reply to the sender alone: got %d, want 250", got)
	}
	if !strings.Contains(h.logs.String(), "rule=max_replies") {
		t.Errorf("no decision log line with rule=max_replies:\n%s", h.logs.String())
	}
}

func TestTwoMessagesOnOneConnectionDoNotShareState(t *testing.T) {
	cfg := testConfig()
	cfg.Policy.Limits.MaxReplies = 1
	h := startServer(t, cfg, store.NewMemory(), nil)
	s := newSession(t, h.addr)
	root := "orig-2@example.org"
	if got := send(t, s, replyAll(1, root)).code(); got != 250 {
		t.Fatalf("first reply-all: got %d", got)
	}
	if got := send(t, s, replyAll(2, root)).code(); got != 550 {
		t.Fatalf("second reply-all on the same connection: got %d, want 550", got)
	}
	// The third message has no list recipient: if the previous message's
	// recipients leaked into it, it would count as a large-audience reply.
	if got := send(t, s, replySender(3, root)).code(); got != 250 {
		t.Fatalf("reply to sender after a refused reply-all on the same connection: got %d, want 250", got)
	}
	if got := h.f.Stats.Decisions.Load(); got != 3 {
		t.Errorf("decisions = %d, want 3", got)
	}
}

func TestActionsTempfailAndMonitor(t *testing.T) {
	for _, tc := range []struct {
		action policy.ConfigAction
		code   uint16
		tagged bool
	}{
		{policy.ConfigTempfail, 451, false},
		{policy.ConfigMonitor, 250, true},
	} {
		t.Run(string(tc.action), func(t *testing.T) {
			cfg := testConfig()
			cfg.Policy.Action = tc.action
			cfg.Policy.Limits.MaxReplies = 1
			h := startServer(t, cfg, store.NewMemory(), nil)
			root := "orig-3@example.org"
			send(t, newSession(t, h.addr), replyAll(1, root))
			r := send(t, newSession(t, h.addr), replyAll(2, root))
			if r.code() != tc.code {
				t.Fatalf("got %d %q, want %d", r.code(), r.act.SMTPReply, tc.code)
			}
			if tc.code == 451 && !strings.HasPrefix(r.act.SMTPReply, "451 4.7.1") {
				t.Errorf("tempfail text %q, want 451 4.7.1", r.act.SMTPReply)
			}
			tag := r.header("X-Stormguard")
			if tc.tagged && !strings.Contains(tag, "rule=max_replies") {
				t.Errorf("monitor header = %q, want one naming rule=max_replies", tag)
			}
			if !tc.tagged && tag != "" {
				t.Errorf("unexpected header %q", tag)
			}
		})
	}
}

// brokenStore fails or panics on every hot-path call.
type brokenStore struct {
	store.Store
	panics bool
}

func (b brokenStore) Resolve(context.Context, []policy.Key) ([]policy.ThreadID, error) {
	if b.panics {
		panic("resolve exploded")
	}
	return nil, errors.New("connection refused")
}

func (b brokenStore) Record(context.Context, store.Record) (policy.Tally, error) {
	if b.panics {
		panic("record exploded")
	}
	return policy.Tally{}, errors.New("connection refused")
}

func (b brokenStore) Globals(context.Context) (store.Globals, error) {
	return store.Globals{}, errors.New("connection refused")
}

func TestStoreFailureFollowsOnError(t *testing.T) {
	t.Run("accept falls back to the memory store", func(t *testing.T) {
		cfg := testConfig()
		cfg.Policy.Limits.MaxReplies = 1
		h := startServer(t, cfg, brokenStore{}, store.NewMemory())
		root := "orig-4@example.org"
		if got := send(t, newSession(t, h.addr), replyAll(1, root)).code(); got != 250 {
			t.Fatalf("first reply with Redis down: got %d, want 250", got)
		}
		if got := send(t, newSession(t, h.addr), replyAll(2, root)).code(); got != 550 {
			t.Fatalf("second reply with Redis down: got %d, want 550 from the local fallback count", got)
		}
		if h.f.Stats.Fallbacks.Load() != 2 || !strings.Contains(h.logs.String(), "store unavailable") {
			t.Errorf("fallbacks = %d, log:\n%s", h.f.Stats.Fallbacks.Load(), h.logs.String())
		}
	})
	t.Run("tempfail", func(t *testing.T) {
		cfg := testConfig()
		cfg.OnError = OnErrorTempfail
		h := startServer(t, cfg, brokenStore{}, store.NewMemory())
		r := send(t, newSession(t, h.addr), replyAll(1, "orig-5@example.org"))
		if r.code() != 451 {
			t.Fatalf("got %d, want 451", r.code())
		}
		// Small mail never touches the store, so it still flows.
		if got := send(t, newSession(t, h.addr), replySender(2, "orig-5@example.org")).code(); got != 250 {
			t.Fatalf("small-audience mail with the store down: got %d, want 250", got)
		}
	})
}

func TestPanicInCallbackDoesNotKillTheDaemon(t *testing.T) {
	h := startServer(t, testConfig(), brokenStore{panics: true}, nil)
	if got := send(t, newSession(t, h.addr), replyAll(1, "orig-6@example.org")).code(); got != 250 {
		t.Fatalf("got %d, want 250 (on_error=accept)", got)
	}
	if h.f.Stats.Panics.Load() != 1 {
		t.Fatalf("panics = %d, want 1", h.f.Stats.Panics.Load())
	}
	// The daemon still serves.
	if got := send(t, newSession(t, h.addr), replySender(2, "orig-6@example.org")).code(); got != 250 {
		t.Fatalf("after the panic: got %d", got)
	}
}

// rawPacket frames one milter packet.
func rawPacket(code byte, data []byte) []byte {
	n := len(data) + 1
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), code}, data...)
}

var negotiate = rawPacket('O', []byte{0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff})

func TestMalformedPacketsDoNotKillTheDaemon(t *testing.T) {
	h := startServer(t, testConfig(), store.NewMemory(), nil)
	cases := map[string][]byte{
		"zero length":            {0, 0, 0, 0},
		"huge length":            {0xff, 0xff, 0xff, 0xff},
		"unknown command":        rawPacket('Z', nil),
		"mail without NUL":       append(negotiateAndHelo(), rawPacket('M', []byte("<a@b>"))...),
		"rcpt without NUL":       append(negotiateAndHelo(), rawPacket('R', []byte("<a@b>"))...),
		"connect without family": append(append([]byte{}, negotiate...), rawPacket('C', []byte("host\x00"))...),
		"connect without NUL":    append(append([]byte{}, negotiate...), rawPacket('C', []byte("host"))...),
		"header without value":   append(negotiateAndHelo(), rawPacket('L', []byte("Subject"))...),
		"short negotiation":      rawPacket('O', []byte{0, 0, 0, 6}),
		"garbage":                []byte("GET / HTTP/1.0\r\n\r\n"),
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(payload); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c) // the daemon closes the connection
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("connection not closed by the daemon: %v", err)
			}
			// ... and still serves the next MTA connection.
			if got := send(t, newSession(t, h.addr), replySender(1, "x@example.org")).code(); got != 250 {
				t.Fatalf("after %s: got %d", name, got)
			}
		})
	}
	if h.f.Stats.BadPackets.Load() == 0 {
		t.Error("the guard counted no bad packets")
	}
}

func negotiateAndHelo() []byte {
	return append(append([]byte{}, negotiate...), rawPacket('H', []byte("client\x00"))...)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
