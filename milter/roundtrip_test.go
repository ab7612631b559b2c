package milter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// tripCounter is a go-redis hook that records every round trip to Redis:
// one entry per single command (ProcessHook) or per pipeline
// (ProcessPipelineHook), naming the commands it carried.
type tripCounter struct {
	mu    sync.Mutex
	trips []string // e.g. "evalsha+set", "get", "script"
}

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		h.add(strings.Join(names, "+"))
		return next(ctx, cmds)
	}
}

func (h *tripCounter) add(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips = append(h.trips, strings.ToLower(s))
}

// take returns the trips since the last call and forgets them.
func (h *tripCounter) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trips
	h.trips = nil
	return t
}

// onlyEvalsha reports whether trips is one pipeline holding exactly one
// EVALSHA (and the link SETs beside it).
func onlyEvalsha(trips []string) bool {
	return len(trips) == 1 && strings.Count(trips[0], "evalsha") == 1 && !strings.Contains(trips[0], "get")
}

// lookupThenEvalsha reports whether trips are one pipeline of GETs (the
// links, at most n of them) and then one EVALSHA.
func lookupThenEvalsha(trips []string, n int) bool {
	if len(trips) != 2 || !onlyEvalsha(trips[1:]) {
		return false
	}
	gets := strings.Split(trips[0], "+")
	return len(gets) <= n && !slices.ContainsFunc(gets, func(c string) bool { return c != "get" })
}

// TestRedisRoundTripsPerMessage counts the Redis round trips each class of
// message costs on one node, through the milter protocol, against a real
// Redis: small-audience mail none; a large-audience original one (one
// pipeline, one EVALSHA); a large-audience reply whose ancestors this
// node's link cache holds one; any other at most two: one pipeline of
// link reads (at most policy.MaxLookup GETs, however long its References),
// then the EVALSHA.
func TestRedisRoundTripsPerMessage(t *testing.T) {
	addr := redisenv.Start(t)
	hook := &tripCounter{}
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	client.AddHook(hook)
	st := store.NewRedis(client, "")
	t.Cleanup(func() { _ = st.Close() })
	cfg := testConfig()
	cfg.Policy.Limits.MaxReplies = 6 // every step before the storm is admitted
	h := startServer(t, cfg, st, store.NewMemory())
	s := newSession(t, h.addr)

	// step sends m and returns the round trips it cost; want 0 takes any
	// verdict.
	step := func(name string, m mail, want uint16) []string {
		t.Helper()
		hook.take()
		if got := send(t, s, m).code(); want != 0 && got != want {
			t.Fatalf("%s: got %d, want %d", name, got, want)
		}
		trips := hook.take()
		t.Logf("%-58s %d round trip(s) %v", name, len(trips), trips)
		return trips
	}

	// The first Record on a fresh Redis loads record.lua (NOSCRIPT, SCRIPT
	// LOAD, EVALSHA): a one-off per Redis server.
	root := "root-rt@example.org"
	step("original to the list (first call: loads the script)", original(root), 250)

	small := replySender(1, root)
	small.headers[3] = [2]string{"Message-ID", " <small-1@example.org>"}
	if trips := step("small-audience reply", small, 250); len(trips) != 0 {
		t.Errorf("small-audience reply: %d round trips %v, want 0", len(trips), trips)
	}
	newMail := mail{from: "a@example.org", rcpts: []string{"b@example.org", "c@example.org"}, headers: [][2]string{
		{"From", " a@example.org"}, {"To", " b@example.org, c@example.org"},
		{"Subject", " Lunch?"}, {"Message-ID", " <small-2@example.org>"}}}
	if trips := step("small-audience new mail", newMail, 250); len(trips) != 0 {
		t.Errorf("small-audience new mail: %d round trips %v, want 0", len(trips), trips)
	}

	// The link cache holds only what the store answered: the first reply
	// to a root reads its links, the next ones find them cached.
	if trips := step("large reply-all with References, root not yet cached", replyAll(2, root), 250); !lookupThenEvalsha(trips, 2) {
		t.Errorf("first reply to the root on this node: %v, want one pipeline of GETs, then one EVALSHA", trips)
	}
	if trips := step("next large reply-all to the same root (cached)", replyAll(20, root), 250); !onlyEvalsha(trips) {
		t.Errorf("next reply to the root: %v, want one pipeline with one EVALSHA", trips)
	}

	// A thread nobody has seen (the original was never seen at all).
	other := "root-other@example.org"
	if trips := step("large reply-all with References, thread unknown", replyAll(3, other), 250); !lookupThenEvalsha(trips, 2) {
		t.Errorf("first reply of an unseen thread: %v, want one pipeline of GETs, then one EVALSHA", trips)
	}
	if trips := step("next large reply-all with References, same thread", replyAll(4, other), 250); !onlyEvalsha(trips) {
		t.Errorf("second reply of the thread: %v, want one pipeline with one EVALSHA", trips)
	}

	// Without References: In-Reply-To only, and a reply subject only.
	irt := replyAll(5, root)
	irt.headers = append(irt.headers[:4:4], [2]string{"In-Reply-To", " <parent-5@example.org>"})
	if trips := step("large reply with In-Reply-To only", irt, 0); len(trips) > 2 {
		t.Errorf("large reply with In-Reply-To only: %d round trips %v, want at most 2", len(trips), trips)
	}
	subj := replyAll(6, root)
	subj.headers = subj.headers[:4]
	subj.headers[2] = [2]string{"Subject", " RE: Another announcement"}
	if trips := step("large reply with a reply subject only", subj, 0); len(trips) > 2 {
		t.Errorf("large reply with a reply subject only: %d round trips %v, want at most 2", len(trips), trips)
	}
	idx := replyAll(7, root)
	idx.headers = append(idx.headers[:4:4], [2]string{"Thread-Index", " AQHZ1234567890abcdefghijklmnopqrstuvAAAAAA=="})
	if trips := step("large reply with Thread-Index only", idx, 0); len(trips) > 2 {
		t.Errorf("large reply with Thread-Index only: %d round trips %v, want at most 2", len(trips), trips)
	}
	// reply-7 was counted in root's thread (by the original's subject
	// key): a reply naming only reply-7 (iPhone Mail) finds that thread
	// through reply-7's own link.
	moved := replyAll(8, "reply-7@example.org")
	if trips := step("large reply naming only a reply counted elsewhere", moved, 0); !lookupThenEvalsha(trips, 2) {
		t.Errorf("iPhone-style reply to a reply: %v, want one pipeline of GETs, then one EVALSHA", trips)
	}
	// A reply in a chain, References as Gmail writes them: the root is
	// cached, its parent (reply-8, recorded just now) is not.
	chain := replyAll(21, root)
	chain.headers[4] = [2]string{"In-Reply-To", " <reply-8@example.org>"}
	chain.headers[5] = [2]string{"References", " <" + root + "> <reply-8@example.org>"}
	if trips := step("large reply in a chain, parent not cached", chain, 0); !lookupThenEvalsha(trips, 3) {
		t.Errorf("chain reply: %v, want one pipeline of GETs, then one EVALSHA", trips)
	}
	// However long its References, one pipeline of at most
	// policy.MaxLookup reads.
	long := replyAll(22, root)
	var refs strings.Builder
	refs.WriteString(" <" + root + ">")
	for i := range 200 {
		fmt.Fprintf(&refs, "\r\n <hop-%d@example.org>", i)
	}
	long.headers[5] = [2]string{"References", refs.String()}
	long.headers[4] = [2]string{"In-Reply-To", " <hop-199@example.org>"}
	if trips := step("large reply with 201 References ids", long, 0); !lookupThenEvalsha(trips, policy.MaxLookup) {
		t.Errorf("long References: %v, want one pipeline of at most %d GETs, then one EVALSHA", trips, policy.MaxLookup)
	}

	// Once the thread crosses max_replies (6 here), refusals cost the same
	// one round trip, except the first one a node sees in a thread: it
	// wrote its links beside the script, as an admitted reply does, and
	// takes them back in a round trip of its own (a refused message
	// leaves no links; store/links.go). Trips that neither run the script
	// nor read links (the storms index, once per storm) are not counted
	// here.
	refused := 0
	for i := 9; i < 20 && refused < 3; i++ {
		hook.take()
		r := send(t, s, replyAll(i, root))
		trips := hook.take()
		t.Logf("reply-all %d (%d): %v", i, r.code(), trips)
		switch {
		case r.code() != 550 || refused > 0:
			if !onlyEvalsha(trips) {
				t.Errorf("reply-all %d (%d): %v, want one pipeline with one EVALSHA", i, r.code(), trips)
			}
		case !onlyEvalsha(trips[:1]) || slices.ContainsFunc(trips[1:], func(p string) bool {
			return strings.Contains(p, "evalsha") || strings.Contains(p, "get") || strings.Contains(p, "set")
		}) || !slices.Contains(trips[1:], "del"):
			t.Errorf("first refusal, reply-all %d: %v, want one pipeline with one EVALSHA, then one that deletes its links", i, trips)
		}
		if r.code() == 550 {
			refused++
		}
	}
	if refused < 3 {
		t.Errorf("%d refusals, want 3", refused)
	}
}
