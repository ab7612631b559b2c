package milter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestSetConfigOverTheMilterProtocol: a configuration put in force with
// SetConfig decides the next message on a connection opened before it,
// with its limits, texts, action, header and lists; one that does not
// validate, or that would hold without the quarantine action negotiated,
// is refused and the one in force stays.
func TestSetConfigOverTheMilterProtocol(t *testing.T) {
	h := startServer(t, testConfig(), store.NewMemory(), nil)
	s := newSession(t, h.addr) // open across every reload below
	root := "reload-1@example.org"
	thread := policy.MessageIDKey(root).Thread()
	set := func(edit func(c *Config)) {
		t.Helper()
		c := h.f.Config()
		edit(&c)
		if err := h.f.SetConfig(c); err != nil {
			t.Fatalf("SetConfig: %v", err)
		}
	}

	set(func(c *Config) {
		c.Policy.Limits.MaxReplies = 1
		c.RejectText = "5.7.1 Reloaded: thread {thread} has too many replies"
	})
	if got := send(t, s, replyAll(1, root)).code(); got != 250 {
		t.Fatalf("reply-all 1 with max_replies 1: got %d, want 250", got)
	}
	r := send(t, s, replyAll(2, root))
	if r.code() != 550 || r.act.SMTPReply != "550 5.7.1 Reloaded: thread "+string(thread)+" has too many replies" {
		t.Fatalf("reply-all 2 with max_replies 1: got %d %q, want 550 with the reloaded text", r.code(), r.act.SMTPReply)
	}

	set(func(c *Config) { c.Policy.Action = policy.ConfigMonitor; c.Header = "X-Reloaded" })
	r = send(t, s, replyAll(3, root))
	if r.code() != 250 || !strings.Contains(r.header("X-Reloaded"), "thread="+string(thread)) {
		t.Fatalf("reply-all 3 in monitor mode: got %d, header X-Reloaded %q", r.code(), r.header("X-Reloaded"))
	}

	// A message decided before a reload ends with the configuration it
	// was decided by: the header it is tagged with is the one in force at
	// end of headers.
	m := replyAll(4, root)
	if _, err := s.Mail(m.from, ""); err != nil {
		t.Fatal(err)
	}
	for _, rc := range m.rcpts {
		if _, err := s.Rcpt(rc, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DataStart(); err != nil {
		t.Fatal(err)
	}
	for _, hf := range m.headers {
		if _, err := s.HeaderField(hf[0], hf[1], nil); err != nil {
			t.Fatal(err)
		}
	}
	if act, err := s.HeaderEnd(); err != nil || act.Type != gomilter.ActionContinue {
		t.Fatalf("end of headers in monitor mode: %v %v, want continue", act, err)
	}
	set(func(c *Config) { c.Header = "X-After" })
	mods, act, err := s.BodyReadFrom(strings.NewReader("body\r\n"))
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("end of message: %v %v", act, err)
	}
	if r := (result{act: act, mods: mods}); r.header("X-Reloaded") == "" || r.header("X-After") != "" {
		t.Errorf("message decided before the reload: headers %v, want X-Reloaded only", mods)
	}

	// Without the list in the config, a reply-all to it is small mail.
	set(func(c *Config) { c.Policy.Action = policy.ConfigReject; c.Lists = nil })
	if r := send(t, s, replyAll(5, root)); r.code() != 250 || r.header("X-After") != "" {
		t.Fatalf("reply-all to a list no longer configured: got %d %v, want a plain 250", r.code(), r.mods)
	}
	set(func(c *Config) { c.Lists = map[string]int{listAddr: 3000} })
	if got := send(t, s, replyAll(6, root)).code(); got != 550 {
		t.Fatalf("reply-all with the list configured again: got %d, want 550", got)
	}

	// Refused: the configuration in force stays.
	before := h.f.Config()
	bad := before
	bad.Policy.Limits.MaxReplies = -1
	if err := h.f.SetConfig(bad); err == nil || !strings.Contains(err.Error(), "policy.max_replies") {
		t.Errorf("SetConfig(max_replies -1) = %v, want an error naming policy.max_replies", err)
	}
	hold := before
	hold.Policy.Action = policy.ConfigHold
	if err := h.f.SetConfig(hold); !errors.Is(err, ErrHoldNeedsRestart) {
		t.Errorf("SetConfig(action hold) on a filter started without hold = %v, want ErrHoldNeedsRestart", err)
	}
	if got := h.f.Config(); got.Policy != before.Policy || got.RejectText != before.RejectText {
		t.Errorf("after refused configs: %+v, want %+v", got.Policy, before.Policy)
	}
	// A refresh of the store's settings keeps the reloaded configuration.
	if err := h.f.RefreshGlobals(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.f.Config(); got.Header != "X-After" || got.Policy.Limits.MaxReplies != 1 {
		t.Errorf("after a refresh: header %q max_replies %d, want X-After and 1", got.Header, got.Policy.Limits.MaxReplies)
	}
}

// TestSetConfigUnderConcurrentDecide swaps between two configurations
// while messages are decided and the store's settings are refreshed: each
// decision is made wholly by one of them (its list sizes and its limits
// together), a message decided after SetConfig returns sees the new one,
// and a refresh never undoes a swap. Run with -race -count=20.
func TestSetConfigUnderConcurrentDecide(t *testing.T) {
	a := testConfig() // the list has 3000 members; 3 replies
	b := testConfig()
	b.Lists = map[string]int{listAddr: 5000}
	b.Policy.Limits.MaxReplies = 1000
	// max_replies -> the audience a reply-all has under that config, measured alone.
	audience := map[int]int{}
	f, err := NewFilter(a, store.NewMemory(), nil, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{a, b} {
		if err := f.SetConfig(c); err != nil {
			t.Fatal(err)
		}
		audience[c.Policy.Limits.MaxReplies] = f.Decide(context.Background(), largeReply("probe", 0)).Audience
	}
	if audience[3] == audience[1000] {
		t.Fatalf("both configs give audience %d; the test cannot tell them apart", audience[3])
	}

	const workers, perWorker, swaps = 4, 300, 200
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, workers+2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				d := f.Decide(context.Background(), largeReply(fmt.Sprintf("w%d", w), uint64(i)))
				if n := d.conf.Policy.Limits.MaxReplies; audience[n] != d.Audience {
					errs <- fmt.Errorf("decided with max_replies %d but audience %d (want %d): two configurations mixed", n, d.Audience, audience[n])
					return
				}
			}
		}()
	}
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for ctx.Err() == nil {
			if err := f.RefreshGlobals(ctx); err != nil && ctx.Err() == nil {
				errs <- err
				return
			}
		}
	}()
	var last Config
	for i := range swaps {
		last = a
		if i%2 == 1 {
			last = b
		}
		if err := f.SetConfig(last); err != nil {
			t.Fatal(err)
		}
		// The very next message is decided by it (nothing else swaps).
		d := f.Decide(context.Background(), smallMessage(uint64(i)))
		if got := d.conf.Policy.Limits.MaxReplies; got != last.Policy.Limits.MaxReplies {
			t.Fatalf("swap %d: next message decided with max_replies %d, want %d", i, got, last.Policy.Limits.MaxReplies)
		}
	}
	wg.Wait()
	cancel()
	<-refreshed
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := f.Config().Policy.Limits.MaxReplies; got != last.Policy.Limits.MaxReplies {
		t.Errorf("after the refresher stopped: max_replies %d, want the last one set, %d", got, last.Policy.Limits.MaxReplies)
	}
}
