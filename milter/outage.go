package milter

import (
	"context"
	"sync"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// What a node keeps so that an outage of the shared store does not reset
// the count: the last answer the store gave for each large-audience
// thread this node decided recently (seenCache), and how many nodes share
// the store (Filter.nodes, from the store's heartbeat). The fallback
// counts a thread under policy.OutageLimits of those.

// seenCache remembers, per thread, the store's last answer (policy.Seen).
// It is bounded like linkCache: entries older than ttl are swept once per
// ttl, and a cache still full after a sweep starts afresh, which only
// makes an outage count from zero (a node's share of the whole limits)
// for the threads it forgot.
type seenCache struct {
	mu        sync.Mutex
	ttl       time.Duration
	max       int
	entries   map[policy.ThreadID]policy.Seen
	nextSweep time.Time
}

// seenMax bounds seenCache: far more large-audience threads than a site
// sees in a window (a storm is one thread).
const seenMax = 50_000

func newSeenCache(ttl time.Duration, max int) *seenCache {
	return &seenCache{ttl: ttl, max: max, entries: make(map[policy.ThreadID]policy.Seen)}
}

func (c *seenCache) put(t policy.ThreadID, s policy.Seen) {
	if t == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.At.After(c.nextSweep) {
		for k, e := range c.entries {
			if s.At.Sub(e.At) > c.ttl {
				delete(c.entries, k)
			}
		}
		c.nextSweep = s.At.Add(c.ttl)
	}
	if len(c.entries) >= c.max {
		if _, ok := c.entries[t]; !ok {
			clear(c.entries)
		}
	}
	c.entries[t] = s
}

// get returns the store's last answer for t, or the zero Seen.
func (c *seenCache) get(t policy.ThreadID) policy.Seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[t]
}

// heartbeater is a shared store that knows how many nodes use it
// (store.Redis): Heartbeat says this node is alive for ttl and returns how
// many are.
type heartbeater interface {
	Heartbeat(ctx context.Context, node string, ttl time.Duration) (int, error)
}

// heartbeat tells the store this node is alive and keeps how many nodes
// share it; on an error the last count stays.
func (f *Filter) heartbeat(ctx context.Context) {
	hb, ok := f.store.(heartbeater)
	if !ok || f.start.Node == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, globalsDeadline)
	defer cancel()
	if n, err := hb.Heartbeat(ctx, f.start.Node, 3*f.start.Refresh); err == nil && n > 0 {
		f.nodes.Store(int64(n))
	}
}

// Nodes is how many nodes share the store, as the last heartbeat counted
// them (1 until one did, and with the memory store).
func (f *Filter) Nodes() int { return int(max(f.nodes.Load(), 1)) }
