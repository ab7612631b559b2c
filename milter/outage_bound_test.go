package milter

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestOutageBoundAcrossNodes: four nodes share a Redis that dies in the
// middle of a storm (max_replies 10), with store.on_error accept. Each
// node then counts the thread alone, but under its share of what the
// thread had left (policy.OutageLimits, the node count from the store's
// heartbeat): together they let through at most max_replies + 3 replies,
// where four nodes counting from zero would let through up to 40 more. A
// thread Redis had blocked stays blocked on every node.
func TestOutageBoundAcrossNodes(t *testing.T) {
	const maxReplies, before, during = 10, 5, 60
	for _, seeded := range []bool{true, false} {
		name := "seeded"
		if !seeded {
			name = "unseeded"
		}
		t.Run(name, func(t *testing.T) {
			srv := redisenv.StartServer(t)
			cfg := outageConfig(OnErrorAccept)
			cfg.Policy.Limits.MaxReplies = maxReplies
			ns := make([]node, 4)
			for i := range ns {
				c := cfg
				c.Node = fmt.Sprintf("mx%d", i+1)
				ns[i] = startNodes(t, 1, c, store.RedisConfig{Addrs: []string{srv.Addr}, Timeout: outageTimeout})[0]
			}
			for range 2 { // the first round's first node counted only itself
				for _, n := range ns {
					n.f.heartbeat(context.Background())
				}
			}
			for i, n := range ns {
				if got := n.f.Nodes(); got != len(ns) {
					t.Fatalf("node %d counts %d nodes sharing Redis, want %d", i, got, len(ns))
				}
			}

			// A blocked storm and a live one, both known to every node.
			blockedRoot, blocked := storm(maxReplies + 1 + len(ns))
			for i, m := range blocked {
				deliver(ns[i%len(ns)].addr, m, 5*time.Second)
			}
			root, mails := storm(before + during)
			accepted := 0
			for i, m := range mails[:before] {
				o := deliver(ns[i%len(ns)].addr, m, 5*time.Second)
				if o.err != nil || o.code != 250 {
					t.Fatalf("reply %d before the outage: %d %v", i, o.code, o.err)
				}
				accepted++
			}
			if !seeded { // the nodes forget what Redis said: they count from nothing
				for _, n := range ns {
					n.f.seen = newSeenCache(time.Hour, seenMax)
				}
			}

			srv.Kill(t)
			for i, m := range mails[before:] {
				o := deliver(ns[i%len(ns)].addr, m, 5*time.Second)
				if o.err != nil {
					t.Fatalf("reply %d during the outage: %v", before+i, o.err)
				}
				if o.code == 250 {
					accepted++
				}
			}
			late := replyAll(99, blockedRoot)
			for k, n := range ns {
				if o := deliver(n.addr, late, 5*time.Second); o.code != 550 && seeded {
					t.Errorf("node %d: a reply to the storm Redis blocked got %d %v during the outage, want 550", k, o.code, o.err)
				}
			}
			var fallbacks uint64
			for _, n := range ns {
				fallbacks += n.f.Stats.Fallbacks.Load()
			}
			bound := maxReplies + len(ns) - 1
			if !seeded {
				bound = before + len(ns)*(maxReplies/len(ns))
			}
			t.Logf("%s: 4 nodes, max_replies %d: %d replies before the outage, %d during it; %d accepted in all (bound %d), %d fallbacks; thread %s",
				name, maxReplies, before, during, accepted, bound, fallbacks, root)
			if accepted > bound {
				t.Errorf("%d replies accepted in all, more than %d", accepted, bound)
			}
			if fallbacks == 0 {
				t.Error("no message fell back to a node's memory store")
			}
		})
	}
}

// lossyStore is a shared store whose answer to a Record is lost on the
// way back when lose says so: Redis ran the script (the reply counted),
// and the node sees only its deadline pass, as on a starved machine.
type lossyStore struct {
	store.Store
	lose func() bool
}

func (s lossyStore) Record(ctx context.Context, r store.Record) (policy.Tally, error) {
	t, err := s.Store.Record(ctx, r)
	if err == nil && s.lose() {
		return policy.Tally{}, fmt.Errorf("store: record thread %s: %w", r.Thread, context.DeadlineExceeded)
	}
	return t, err
}

// TestRetryAfterLostAnswerCountsOnce: every other answer from Redis is
// lost after the script ran. The node tries the call again (store.budget)
// and Redis, knowing the message, answers it as the same message: the
// storm of 20 replies is refused from the 11th exactly, each reply counted
// once in Redis, nothing counted in the node's memory.
func TestRetryAfterLostAnswerCountsOnce(t *testing.T) {
	addr := redisenv.Start(t)
	st, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Timeout: outageTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var mu sync.Mutex
	calls := 0
	lossy := lossyStore{Store: st, lose: func() bool {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return calls%2 == 1
	}}
	cfg := outageConfig(OnErrorAccept)
	cfg.Policy.Limits.MaxReplies = 10
	h := startServer(t, cfg, lossy, store.NewMemory())
	root, mails := storm(20)
	codes := map[uint16]int{}
	for i, m := range mails {
		o := deliver(h.addr, m, 5*time.Second)
		if o.err != nil {
			t.Fatalf("reply %d: %v", i, o.err)
		}
		if want := map[bool]uint16{true: 250, false: 550}[i < 10]; o.code != want {
			t.Errorf("reply %d: %d, want %d", i+1, o.code, want)
		}
		codes[o.code]++
	}
	th := policy.MessageIDKey(root).Thread()
	accepted := redisenv.CLI(t, addr, "HGET", "stormguard:{"+string(th)+"}:meta", "accepted")
	t.Logf("20 replies, every other answer lost: %v; Redis counted %s; %d retries, %d fallbacks",
		codes, accepted, h.f.Stats.StoreRetries.Load(), h.f.Stats.Fallbacks.Load())
	if accepted != "10" || h.f.Stats.Fallbacks.Load() != 0 || h.f.Stats.StoreRetries.Load() == 0 {
		t.Errorf("Redis counted %s (want 10), %d fallbacks (want 0), %d retries (want some)",
			accepted, h.f.Stats.Fallbacks.Load(), h.f.Stats.StoreRetries.Load())
	}
}
