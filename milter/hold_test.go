package milter

import (
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// quarantined is the quarantine reason among r's modifications, or "".
func quarantined(r result) string {
	for _, m := range r.mods {
		if m.Type == gomilter.ActionQuarantine {
			return m.Reason
		}
	}
	return ""
}

func holdConfig() Config {
	cfg := testConfig() // 3 replies per window
	cfg.Policy.Action = policy.ConfigHold
	return cfg
}

// TestHoldStorm: with policy.action hold, the replies within the limit
// pass unheld; the one that crosses it and the next are accepted with a
// quarantine whose reason is one line naming the thread and the rule and
// nothing the sender wrote; an operator's block holds too; the next
// message on the same connection is not held.
func TestHoldStorm(t *testing.T) {
	h := startServer(t, holdConfig(), store.NewMemory(), nil)
	root := "hold-1@example.org"
	thread := policy.MessageIDKey(root).Thread()
	if r := send(t, newSession(t, h.addr), original(root)); r.code() != 250 || quarantined(r) != "" {
		t.Fatalf("original: got %d, held %q; want 250 unheld", r.code(), quarantined(r))
	}
	for i := 1; i <= 3; i++ {
		if r := send(t, newSession(t, h.addr), replyAll(i, root)); r.code() != 250 || quarantined(r) != "" {
			t.Fatalf("reply-all %d: got %d, held %q; want 250 unheld", i, r.code(), quarantined(r))
		}
	}
	s := newSession(t, h.addr)
	for _, c := range []struct {
		n    int
		rule policy.Rule
	}{{4, policy.RuleMaxReplies}, {5, policy.RuleBlocked}} {
		m := replyAll(c.n, root)
		// Hostile header text must not reach the reason.
		m.headers[2] = [2]string{"Subject", " RE: <script>alert(1)</script>\x1b[31m red"}
		r := send(t, s, m)
		reason := quarantined(r)
		want := "stormguard: reply-all storm in thread " + string(thread) + " (" + string(c.rule) + "); release with stormguard queue " + string(thread) + " --release"
		if r.act.Type != gomilter.ActionAccept || reason != want {
			t.Fatalf("reply-all %d: got %v with %v, want accept with quarantine %q", c.n, r.act, r.mods, want)
		}
		if strings.ContainsAny(reason, "\r\n\x1b<>") || strings.Contains(reason, "user") {
			t.Errorf("reason %q carries sender text", reason)
		}
	}
	if !strings.Contains(h.logs.String(), "action=hold") || !strings.Contains(h.logs.String(), "rule=max_replies") {
		t.Errorf("no decision line with action=hold rule=max_replies:\n%s", h.logs.String())
	}
	// The same connection goes on: a reply to the sender alone is not held.
	if r := send(t, s, replySender(6, root)); r.code() != 250 || quarantined(r) != "" {
		t.Fatalf("reply to the sender after a held one: got %d, held %q", r.code(), quarantined(r))
	}

	t.Run("override block holds", func(t *testing.T) {
		st := store.NewMemory()
		h := startServer(t, holdConfig(), st, nil)
		root := "hold-ob@example.org"
		thread := policy.MessageIDKey(root).Thread()
		if err := st.SetOverride(t.Context(), thread, policy.OverrideBlock, 0); err != nil {
			t.Fatal(err)
		}
		r := send(t, newSession(t, h.addr), replyAll(1, root))
		if reason := quarantined(r); r.act.Type != gomilter.ActionAccept || !strings.Contains(reason, "thread "+string(thread)+" (override_block)") {
			t.Fatalf("reply on a blocked thread: got %v with %v, want a hold naming the thread and override_block", r.act, r.mods)
		}
	})

	t.Run("auto-reply over its audience is rejected, not held", func(t *testing.T) {
		m := replyAll(9, root)
		m.headers = append(m.headers, [2]string{"Auto-Submitted", " auto-replied"})
		r := send(t, newSession(t, h.addr), m)
		if r.code() != 550 || quarantined(r) != "" {
			t.Fatalf("auto-reply: got %d %q, held %q; want 550 unheld", r.code(), r.act.SMTPReply, quarantined(r))
		}
	})

	t.Run("monitor mode tags", func(t *testing.T) {
		cfg := holdConfig()
		cfg.Mode = policy.ModeMonitor
		h := startServer(t, cfg, store.NewMemory(), nil)
		send(t, newSession(t, h.addr), original(root))
		var r result
		for i := 1; i <= 4; i++ {
			r = send(t, newSession(t, h.addr), replyAll(i, root))
		}
		if r.code() != 250 || quarantined(r) != "" || !strings.Contains(r.header("X-Stormguard"), "rule=max_replies") {
			t.Fatalf("monitor: got %d, held %q, tag %q; want 250 unheld and tagged", r.code(), quarantined(r), r.header("X-Stormguard"))
		}
	})
}

// TestHoldWithoutQuarantine: an MTA that does not offer the quarantine
// action still connects (it is asked for, not required); the message to
// hold is tempfailed with the storm's 451 naming the thread, never let
// through, and the other verdicts are unchanged.
func TestHoldWithoutQuarantine(t *testing.T) {
	h := startServer(t, holdConfig(), store.NewMemory(), nil)
	root := "noq@example.org"
	thread := policy.MessageIDKey(root).Thread()
	s := noQuarantineSession(t, h.addr)
	if s.ActionOption(gomilter.OptQuarantine) {
		t.Fatal("quarantine negotiated with an MTA that does not offer it")
	}
	if r := send(t, s, original(root)); r.code() != 250 {
		t.Fatalf("original: got %d", r.code())
	}
	for i := 1; i <= 3; i++ {
		if r := send(t, s, replyAll(i, root)); r.code() != 250 {
			t.Fatalf("reply-all %d: got %d %q, want 250", i, r.code(), r.act.SMTPReply)
		}
	}
	r := send(t, s, replyAll(4, root))
	if r.code() != 451 || !strings.Contains(r.act.SMTPReply, "4.7.1") || !strings.Contains(r.act.SMTPReply, string(thread)) || quarantined(r) != "" {
		t.Fatalf("reply-all 4 without quarantine: got %d %q with %v, want 451 4.7.1 naming thread %s", r.code(), r.act.SMTPReply, r.mods, thread)
	}
	if !strings.Contains(h.logs.String(), "cannot hold message") {
		t.Errorf("no error line about the refused quarantine:\n%s", h.logs.String())
	}

	t.Run("gate hold falls back to the gate's 451", func(t *testing.T) {
		cfg := gateConfig(policy.ConfigHold)
		h := startServer(t, cfg, store.NewMemory(), nil)
		r := send(t, noQuarantineSession(t, h.addr), from(original("gate-noq@example.org"), "contractor@example.org"))
		if r.code() != 451 || !strings.Contains(r.act.SMTPReply, "4.7.1 Only authorized senders") {
			t.Fatalf("gate hold without quarantine: got %d %q, want the gate's 451", r.code(), r.act.SMTPReply)
		}
	})
}

// noQuarantineSession is newSession from an MTA that does not offer the
// quarantine action.
func noQuarantineSession(t *testing.T, addr string) *gomilter.ClientSession {
	t.Helper()
	s, err := gomilter.NewClient("tcp", addr, gomilter.WithoutAction(gomilter.OptQuarantine)).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatalf("milter session without quarantine: %v", err)
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

// TestHoldNegotiation: quarantine is negotiated when some action is hold
// (policy.action or the gate's), and only then; with hold, an MTA that
// lacks another action the filter needs (add header) is still refused, as
// go-milter's own negotiation refuses it.
func TestHoldNegotiation(t *testing.T) {
	gateHold := testConfig()
	gateHold.Policy.Gate = policy.Gate{MinAudience: 5000, Action: policy.ConfigHold}
	for _, c := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"policy.action hold", holdConfig(), true},
		{"gate.action hold", gateHold, true},
		{"reject", testConfig(), false},
	} {
		h := startServer(t, c.cfg, store.NewMemory(), nil)
		if got := newSession(t, h.addr).ActionOption(gomilter.OptQuarantine); got != c.want {
			t.Errorf("%s: quarantine negotiated = %v, want %v", c.name, got, c.want)
		}
	}
	h := startServer(t, holdConfig(), store.NewMemory(), nil)
	if s, err := gomilter.NewClient("tcp", h.addr, gomilter.WithActions(gomilter.OptQuarantine)).Session(gomilter.NewMacroBag()); err == nil {
		_ = s.Close()
		t.Fatal("an MTA without the add-header action negotiated a session")
	}
}

// TestGateHoldReasonIsClean: the sender gate's quarantine reason names
// the envelope sender, which the sender chose: its control characters
// (ESC, BEL, CR, LF) and invisible format characters never reach the
// reason, which Sendmail shows in mailq -qQ.
func TestGateHoldReasonIsClean(t *testing.T) {
	h := startServer(t, gateConfig(policy.ConfigHold), store.NewMemory(), nil)
	sender := "x\x1b]2;pwned\x07\x1b[31m\u202eevil\r\n@example.net"
	r := send(t, gateSession(t, h.addr, ""), from(original("dirty-gate@example.org"), sender))
	reason := quarantined(r)
	t.Logf("reason %q", reason)
	if r.act.Type != gomilter.ActionAccept || reason == "" {
		t.Fatalf("got %v with %v, want accept with a quarantine", r.act, r.mods)
	}
	if strings.ContainsFunc(reason, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '\u202e' }) {
		t.Errorf("reason %q carries control or format characters", reason)
	}
	if !strings.Contains(reason, "evil") || !strings.Contains(reason, listAddr) {
		t.Errorf("reason %q lost the sender or the list", reason)
	}
	long := strings.Repeat("a", 5000) + "@example.net"
	if reason := quarantined(send(t, gateSession(t, h.addr, ""), from(original("long-gate@example.org"), long))); len(reason) > 512 {
		t.Errorf("reason for a 5,000-byte sender is %d bytes", len(reason))
	}
}
