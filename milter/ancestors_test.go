package milter

import (
	"fmt"
	"testing"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Thread identity through every known ancestor, through the milter
// protocol, on the memory store and a real Redis: a reply is counted in
// the thread of the nearest ancestor stormguard recorded, whatever its
// client kept of References; and what a sender writes in References can
// merge, block or unblock no thread.

// about is a mail with the given subject, Message-ID and threading
// headers, from sender to the list.
func about(sender, subject, id, inReplyTo, references string) mail {
	h := [][2]string{
		{"From", " <" + sender + ">"},
		{"To", " " + listAddr},
		{"Subject", " " + subject},
		{"Message-ID", " <" + id + ">"},
	}
	if inReplyTo != "" {
		h = append(h, [2]string{"In-Reply-To", " " + inReplyTo})
	}
	if references != "" {
		h = append(h, [2]string{"References", " " + references})
	}
	return mail{from: sender, rcpts: []string{listAddr}, headers: h}
}

// TestReplyChainOfMixedClientsIsOneStorm: each reply answers the previous
// one, written as Gmail, iPhone Mail, RainLoop, Mutt (last ids only) and
// a web form (a bare id) write it; none of them names the root first
// after the second reply. The first max_replies are counted in the
// original's thread and the next one is refused there.
func TestReplyChainOfMixedClientsIsOneStorm(t *testing.T) {
	forEachStore(t, func(t *testing.T, st hostileStore) {
		cfg := hostileConfig()
		cfg.Policy.Limits.MaxReplies = 6
		h := startServer(t, cfg, st, store.NewMemory())
		root := "chain-root@example.org"
		want := policy.MessageIDKey(root).Thread()
		if got := send(t, newSession(t, h.addr), about("boss@example.org", "Reorganisation", root, "", "")).code(); got != 250 {
			t.Fatalf("original: %d", got)
		}
		refs := []string{root} // the References a standards-following client would write next
		parent := root
		styles := []string{"gmail", "iphone", "rainloop", "mutt", "webform", "gmail", "iphone"}
		for i, style := range styles {
			id := fmt.Sprintf("chain-%d@example.org", i+1)
			var irt, rf string
			switch style {
			case "gmail": // the parent's References plus the parent's id
				irt, rf = "<"+parent+">", angle(refs...)
			case "iphone": // the parent's id only
				irt, rf = "<"+parent+">", "<"+parent+">"
			case "rainloop": // newest first
				irt, rf = "<"+parent+">", angle(reversed(refs)...)
			case "mutt": // the last ids only (here the last two)
				irt, rf = "<"+parent+">", angle(refs[max(0, len(refs)-2):]...)
			case "webform": // In-Reply-To as a bare id, no References
				irt = parent
			}
			r := send(t, newSession(t, h.addr), about(fmt.Sprintf("u%d@example.org", i), "Re: Reorganisation", id, irt, rf))
			wantCode := uint16(250)
			if i >= cfg.Policy.Limits.MaxReplies {
				wantCode = 550
			}
			if r.code() != wantCode {
				t.Errorf("reply %d (%s): %d, want %d", i+1, style, r.code(), wantCode)
			}
			refs = append(refs, id)
			parent = id
		}
		if info := threadState(t, st, want); info.Accepted != cfg.Policy.Limits.MaxReplies || !info.Blocked {
			t.Errorf("root thread: accepted %d blocked %v, want %d and blocked", info.Accepted, info.Blocked, cfg.Policy.Limits.MaxReplies)
		}
	})
}

// TestHostileReferencesNamingTwoStormsMergesNothing: storm A is blocked,
// thread B is under its limit. Replies whose References name both are
// counted once, in the nearest known ancestor's thread; afterwards A is
// still blocked, B still counts its own replies, and every identity of
// either still leads where it led.
func TestHostileReferencesNamingTwoStormsMergesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, st hostileStore) {
		cfg := hostileConfig()
		h := startServer(t, cfg, st, store.NewMemory())
		rootA, rootB := "storm-a@example.org", "storm-b@example.org"
		threadA, threadB := policy.MessageIDKey(rootA).Thread(), policy.MessageIDKey(rootB).Thread()
		send(t, newSession(t, h.addr), about("boss@example.org", "Storm A", rootA, "", ""))
		send(t, newSession(t, h.addr), about("boss@example.org", "Thread B", rootB, "", ""))
		for i := 1; i <= cfg.Policy.Limits.MaxReplies+1; i++ { // the last one crosses: A is blocked
			send(t, newSession(t, h.addr), about(fmt.Sprintf("a%d@example.org", i), "Re: Storm A",
				fmt.Sprintf("a-%d@example.org", i), "<"+rootA+">", "<"+rootA+">"))
		}
		if got := send(t, newSession(t, h.addr), about("b1@example.org", "Re: Thread B", "b-1@example.org", "<"+rootB+">", "<"+rootB+">")).code(); got != 250 {
			t.Fatalf("first reply in B: %d", got)
		}
		a, b := threadState(t, st, threadA), threadState(t, st, threadB)
		if !a.Blocked || b.Blocked || b.Accepted != 1 {
			t.Fatalf("before: A blocked %v, B blocked %v accepted %d", a.Blocked, b.Blocked, b.Accepted)
		}

		// Nearest ancestor in B (its parent), A's root first: counted in B.
		r := send(t, newSession(t, h.addr), about("mallory@example.org", "Re: Storm A", "x-1@evil.example",
			"<b-1@example.org>", angle(rootA, "a-1@example.org", rootB, "b-1@example.org")))
		if r.code() != 250 {
			t.Errorf("reply whose nearest ancestor is in B: %d, want 250 (counted in B)", r.code())
		}
		// Nearest ancestor in A: counted in A, refused (A is blocked),
		// and, refused, it links nothing.
		r = send(t, newSession(t, h.addr), about("mallory@example.org", "Re: Thread B", "x-2@evil.example",
			"<a-1@example.org>", angle(rootB, "b-1@example.org", rootA, "a-1@example.org")))
		if r.code() != 550 {
			t.Errorf("reply whose nearest ancestor is in A: %d, want 550 (A is blocked)", r.code())
		}

		a2, b2 := threadState(t, st, threadA), threadState(t, st, threadB)
		if !a2.Blocked || a2.Accepted != a.Accepted || a2.Refused != a.Refused+1 {
			t.Errorf("A after: blocked %v accepted %d refused %d; want blocked, %d and %d", a2.Blocked, a2.Accepted, a2.Refused, a.Accepted, a.Refused+1)
		}
		if b2.Blocked || b2.Accepted != 2 || b2.Refused != 0 {
			t.Errorf("B after: blocked %v accepted %d refused %d; want open, 2 and 0", b2.Blocked, b2.Accepted, b2.Refused)
		}
		found, err := st.Resolve(t.Context(), []policy.Key{
			policy.MessageIDKey(rootA), policy.MessageIDKey("a-1@example.org"),
			policy.MessageIDKey(rootB), policy.MessageIDKey("b-1@example.org"),
			policy.MessageIDKey("x-1@evil.example"), policy.MessageIDKey("x-2@evil.example"),
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []policy.ThreadID{threadA, threadA, threadB, threadB, threadB, ""}
		for i := range want {
			if found[i] != want[i] {
				t.Errorf("links after: %q, want %q", found, want)
				break
			}
		}
		// Legitimate replies still land where they belong.
		if got := send(t, newSession(t, h.addr), about("a9@example.org", "Re: Storm A", "a-9@example.org", "<"+rootA+">", "<"+rootA+">")).code(); got != 550 {
			t.Errorf("legitimate reply in A after the attack: %d, want 550 (A stays blocked)", got)
		}
		if got := send(t, newSession(t, h.addr), about("b2@example.org", "Re: Thread B", "b-2@example.org", "<"+rootB+">", "<"+rootB+">")).code(); got != 250 {
			t.Errorf("legitimate reply in B after the attack: %d, want 250", got)
		}
	})
}

// TestHostileIDsWithoutAtJoinNothing: replies whose only threading id is
// one without "@" (an old git-send-email wrote "<yes>") must not be
// counted together under that word, whatever conversation they answered.
// Such an id is no message-id: each reply finds its own conversation by
// its subject.
func TestHostileIDsWithoutAtJoinNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, st hostileStore) {
		h := startServer(t, hostileConfig(), st, store.NewMemory())
		for _, c := range []struct{ root, subject string }{{"patch-1@example.org", "[PATCH] fix the build"}, {"patch-2@example.org", "[PATCH] speed up the tests"}} {
			send(t, newSession(t, h.addr), about("dev@example.org", c.subject, c.root, "", ""))
		}
		for i := 1; i <= 4; i++ { // max_replies is 3: one thread of them would block
			c := []string{"[PATCH] fix the build", "[PATCH] speed up the tests"}[i%2]
			r := send(t, newSession(t, h.addr), about(fmt.Sprintf("r%d@example.org", i), "Re: "+c, fmt.Sprintf("yes-%d@example.org", i), "<yes>", "<yes>"))
			if r.code() != 250 {
				t.Errorf("reply %d with <yes>: %d, want 250 (two replies in each conversation)", i, r.code())
			}
		}
		for _, root := range []string{"patch-1@example.org", "patch-2@example.org"} {
			if info := threadState(t, st, policy.MessageIDKey(root).Thread()); info.Accepted != 2 {
				t.Errorf("%s: %d replies counted, want 2", root, info.Accepted)
			}
		}
	})
}

func angle(ids ...string) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += " "
		}
		s += "<" + id + ">"
	}
	return s
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}
