package milter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Attacks on thread identity, each run through the milter
// protocol against the memory store and a real Redis: an outsider, who
// can write any header but reaches only the mailboxes of its envelope,
// must not be able to take over, block or unblock a legitimate thread.

const (
	everyone = "everyone@example.org" // 600,000 members
	students = "students@example.org" // 500,000 members
	victim   = "victim@example.org"
)

// hostileStore is a store the tests can also inspect.
type hostileStore interface {
	store.Store
	store.Admin
}

// forEachStore runs f against a fresh memory store and a fresh real Redis.
func forEachStore(t *testing.T, f func(t *testing.T, st hostileStore)) {
	t.Run("memory", func(t *testing.T) { f(t, store.NewMemory()) })
	t.Run("redis", func(t *testing.T) {
		st, err := store.OpenRedis(store.RedisConfig{Addrs: []string{redisenv.Start(t)}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		f(t, st)
	})
}

func hostileConfig() Config {
	cfg := testConfig()
	cfg.Lists = map[string]int{listAddr: 3000, everyone: 600_000, students: 500_000}
	return cfg
}

// forged is an outsider's message: envelope to one mailbox, headers as
// given (From, Subject, then extra).
func forged(extra ...[2]string) mail {
	return mail{
		from:  "mallory@evil.example",
		rcpts: []string{victim},
		headers: append([][2]string{
			{"From", " <mallory@evil.example>"},
			{"Subject", " Re: you have been hijacked"},
		}, extra...),
	}
}

// threadState is what the store says of a thread ("" fields when unknown).
func threadState(t *testing.T, st hostileStore, th policy.ThreadID) store.ThreadInfo {
	t.Helper()
	info, err := st.Thread(context.Background(), th, time.Now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Thread(%s): %v", th, err)
	}
	return info
}

// inReplyToOnly is a reply-all to parent carrying In-Reply-To and no
// References, as some clients send.
func inReplyToOnly(i int, parent string) mail {
	m := replyAll(i, parent)
	m.headers = m.headers[:5]
	return m
}

// Attack a: a message to one mailbox, with two registered lists in its To
// header, the legitimate root's Message-ID and an unrelated In-Reply-To.
// Were it counted by its header audience, it would be refused by
// delivery_budget in the In-Reply-To's thread; were links last-writer, it
// would move the root's link there, and every legitimate reply to the
// root would be refused in the attacker's thread.
func TestHostileForgedRootIDDoesNotTakeTheThreadOver(t *testing.T) {
	forEachStore(t, func(t *testing.T, st hostileStore) {
		h := startServer(t, hostileConfig(), st, store.NewMemory())
		root := "root-a@example.org"
		rootThread := policy.MessageIDKey(root).Thread()
		if got := send(t, newSession(t, h.addr), original(root)).code(); got != 250 {
			t.Fatalf("original: %d", got)
		}
		attack := forged(
			[2]string{"To", " " + everyone + ", " + students},
			[2]string{"Message-ID", " <" + root + ">"},
			[2]string{"In-Reply-To", " <unrelated-a@evil.example>"},
		)
		r := send(t, newSession(t, h.addr), attack)
		t.Logf("attack: %d %q", r.code(), r.act.SMTPReply)
		attackThread := policy.MessageIDKey("unrelated-a@evil.example").Thread()

		// Legitimate replies, with References and with In-Reply-To only,
		// are counted in the root's thread, within the limit (3).
		if got := send(t, newSession(t, h.addr), replyAll(1, root)).code(); got != 250 {
			t.Errorf("reply-all with References after the attack: %d, want 250", got)
		}
		if got := send(t, newSession(t, h.addr), inReplyToOnly(2, root)).code(); got != 250 {
			t.Errorf("reply-all with In-Reply-To only after the attack: %d, want 250", got)
		}
		if info := threadState(t, st, rootThread); info.Accepted != 2 || info.Blocked {
			t.Errorf("root thread: accepted %d blocked %v, want 2 and not blocked (%+v)", info.Accepted, info.Blocked, info)
		}
		if info := threadState(t, st, attackThread); info.Blocked || info.StormRule != "" || info.Sender == "mallory@evil.example" {
			t.Errorf("attacker's thread %s: %+v, want no storm and no record of the attacker", attackThread, info)
		}
	})
}

// Attack b: References to the legitimate root and To: the list in the
// header, to one mailbox: max_replies+1 of them must not block the thread.
func TestHostileHeaderOnlyRepliesDoNotBlockTheThread(t *testing.T) {
	forEachStore(t, func(t *testing.T, st hostileStore) {
		cfg := hostileConfig()
		h := startServer(t, cfg, st, store.NewMemory())
		root := "root-b@example.org"
		rootThread := policy.MessageIDKey(root).Thread()
		send(t, newSession(t, h.addr), original(root))
		for i := range cfg.Policy.Limits.MaxReplies + 5 {
			m := forged(
				[2]string{"To", " " + listAddr},
				[2]string{"Message-ID", fmt.Sprintf(" <forged-b-%d@evil.example>", i)},
				[2]string{"References", " <" + root + ">"},
			)
			send(t, newSession(t, h.addr), m)
		}
		if info := threadState(t, st, rootThread); info.Blocked || info.Accepted != 0 {
			t.Errorf("root thread after %d header-only replies: accepted %d blocked %v, want 0 and not blocked",
				cfg.Policy.Limits.MaxReplies+5, info.Accepted, info.Blocked)
		}
		if got := send(t, newSession(t, h.addr), replyAll(1, root)).code(); got != 250 {
			t.Errorf("legitimate reply-all after the attack: %d, want 250", got)
		}
	})
}

// Attack c: once a thread is blocked, reusing the Message-ID of one of its
// counted replies must not pass as a duplicate every time. Only the same
// message again (same envelope sender and audience) passes, and only
// policy.MaxDuplicates times.
func TestHostileReusedMessageIDDoesNotBypassTheBlock(t *testing.T) {
	forEachStore(t, func(t *testing.T, st hostileStore) {
		cfg := hostileConfig()
		h := startServer(t, cfg, st, store.NewMemory())
		root := "root-c@example.org"
		for i := 1; i <= cfg.Policy.Limits.MaxReplies; i++ {
			if got := send(t, newSession(t, h.addr), replyAll(i, root)).code(); got != 250 {
				t.Fatalf("reply-all %d: %d", i, got)
			}
		}
		if got := send(t, newSession(t, h.addr), replyAll(cfg.Policy.Limits.MaxReplies+1, root)).code(); got != 550 {
			t.Fatalf("the storm's reply: %d, want 550", got)
		}
		// Another sender, to the list, with reply 1's Message-ID.
		for i := range 5 {
			m := replyAll(100+i, root)
			m.headers[3] = [2]string{"Message-ID", " <reply-1@example.org>"}
			if r := send(t, newSession(t, h.addr), m); r.code() != 550 {
				t.Errorf("reused Message-ID from %s, attempt %d: %d, want 550", m.from, i+1, r.code())
			}
		}
		// The same message from the same sender to the same audience (a
		// retry or a relay hop) passes, a bounded number of times.
		accepted := 0
		for range policy.MaxDuplicates + 3 {
			if send(t, newSession(t, h.addr), replyAll(1, root)).code() == 250 {
				accepted++
			}
		}
		if accepted != policy.MaxDuplicates {
			t.Errorf("retries of reply 1 accepted %d times, want %d", accepted, policy.MaxDuplicates)
		}
		// The same sender and Message-ID to another audience is not the
		// same message.
		m := replyAll(2, root)
		m.rcpts = append(m.rcpts, everyone)
		if got := send(t, newSession(t, h.addr), m).code(); got != 550 {
			t.Errorf("reply 2's id and sender to a larger audience: %d, want 550", got)
		}
	})
}

// With policy.split_envelopes, the header audience counts (the envelope
// under-states it where the MTA splits one message into transactions of
// a few recipients each).
func TestSplitEnvelopesCountsTheHeaderAudience(t *testing.T) {
	cfg := hostileConfig()
	cfg.Policy.SplitEnvelopes = true
	cfg.Policy.Limits.MaxReplies = 1
	st := store.NewMemory()
	h := startServer(t, cfg, st, nil)
	root := "root-split@example.org"
	split := func(i int) mail {
		m := replyAll(i, root)
		m.rcpts = []string{fmt.Sprintf("member%d@example.org", i)} // one chunk of the expanded list
		return m
	}
	if got := send(t, newSession(t, h.addr), split(1)).code(); got != 250 {
		t.Fatalf("first split reply: %d", got)
	}
	if got := send(t, newSession(t, h.addr), split(2)).code(); got != 550 {
		t.Fatalf("second split reply: %d, want 550 (the header's list counts)", got)
	}
}
