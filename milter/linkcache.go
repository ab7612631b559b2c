package milter

import (
	"sync"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// linkCache remembers, for a short while, which thread an identity key is
// linked to ("" for no link). Most replies of a storm answer the same
// message (the original, or one reply that drew many answers) and carry
// the same GUID or subject and list, so after the first one a node
// resolves the thread without a store round trip and the atomic Record is
// the only call.
// A stale entry can only delay, by at most its TTL, a link written by
// another node; it never changes a count.
//
// It is hand-written rather than hashicorp/golang-lru/v2/expirable because
// BenchmarkLinkCache, which runs both on the hot path's mix, measured the
// LRU (v2.0.7) at about 3 times the time in the cache per message (a lock,
// a list move and a bucket move per key; BenchmarkDecide large-reply on
// the memory store +15%) and 2.4 times the memory per entry; it also reads
// only the wall clock, and starts a goroutine per cache that it cannot
// stop. Memory stays bounded here too: expired entries are swept once per
// TTL, and a cache still full after a sweep starts afresh.
type linkCache struct {
	mu        sync.Mutex
	ttl       time.Duration
	max       int
	entries   map[policy.Key]linkEntry
	nextSweep time.Time
}

type linkEntry struct {
	thread  policy.ThreadID
	expires time.Time
}

func newLinkCache(ttl time.Duration, max int) *linkCache {
	return &linkCache{ttl: ttl, max: max, entries: make(map[policy.Key]linkEntry)}
}

// lookup answers for keys, in order of preference, as Resolve would: ok
// when every key up to the first one linked to a thread is cached (found
// then holds that thread at its index, and "" before it and after it), or
// every key is cached as not linked. A key missing or expired before that
// makes ok false: the store must be asked, since that key may lead to a
// nearer thread.
func (c *linkCache) lookup(keys []policy.Key, now time.Time) (found []policy.ThreadID, ok bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	found = make([]policy.ThreadID, len(keys))
	for i, k := range keys {
		e, hit := c.entries[k]
		if !hit || now.After(e.expires) {
			return nil, false
		}
		if e.thread != "" {
			found[i] = e.thread
			return found, true
		}
	}
	return found, true
}

// put caches keys[i] -> threads[i].
func (c *linkCache) put(keys []policy.Key, threads []policy.ThreadID, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Entries live for ttl: dropping the expired ones once per ttl keeps
	// the cache to about one ttl's worth of large-audience mail.
	if len(c.entries)+len(keys) > c.max || now.After(c.nextSweep) {
		c.sweep(now)
		c.nextSweep = now.Add(c.ttl)
	}
	exp := now.Add(c.ttl)
	for i, k := range keys {
		if i < len(threads) {
			c.entries[k] = linkEntry{thread: threads[i], expires: exp}
		}
	}
}

// sweep drops expired entries, or everything if the cache is still full:
// it is a cache, and a cold one only costs a round trip. Go maps never
// shrink, so a map that has emptied out is replaced.
func (c *linkCache) sweep(now time.Time) {
	before := len(c.entries)
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) >= c.max {
		c.entries = make(map[policy.Key]linkEntry)
		return
	}
	if before > 1024 && len(c.entries) < before/4 {
		fresh := make(map[policy.Key]linkEntry, len(c.entries))
		for k, e := range c.entries {
			fresh[k] = e
		}
		c.entries = fresh
	}
}
