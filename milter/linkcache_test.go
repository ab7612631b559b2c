package milter

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/stormguard/stormguard/policy"
)

func TestLinkCache(t *testing.T) {
	c := newLinkCache(10*time.Second, 1000)
	now := time.Unix(1_700_000_000, 0)
	k := []policy.Key{policy.MessageIDKey("a@example.org"), policy.MessageIDKey("b@example.org")}
	if _, ok := c.lookup(k, now); ok {
		t.Fatal("hit on an empty cache")
	}
	c.put(k, []policy.ThreadID{"1111111111111111", ""}, now)
	got, ok := c.lookup(k, now.Add(9*time.Second))
	if !ok || got[0] != "1111111111111111" || got[1] != "" {
		t.Fatalf("lookup = %v, %v", got, ok)
	}
	if _, ok := c.lookup(k, now.Add(11*time.Second)); ok {
		t.Fatal("expired entries still served")
	}
	// Keys in order of preference: a key not cached before the first one
	// linked may lead nearer, so the store must be asked; one after it
	// cannot change the answer.
	c0 := policy.MessageIDKey("c@example.org")
	if _, ok := c.lookup([]policy.Key{c0, k[0]}, now); ok {
		t.Fatal("an uncached key before the linked one must miss")
	}
	if got, ok := c.lookup([]policy.Key{k[1], k[0], c0}, now); !ok || got[0] != "" || got[1] != "1111111111111111" || got[2] != "" {
		t.Fatalf("linked key after a key cached as unlinked: %v, %v", got, ok)
	}
	if _, ok := c.lookup([]policy.Key{k[1], c0}, now); ok {
		t.Fatal("no key linked and one not cached must miss")
	}
}

// TestLinkCacheStaysSmall: a steady stream of new threads keeps the cache
// at about one TTL's worth of entries, far below its cap.
func TestLinkCacheStaysSmall(t *testing.T) {
	c := newLinkCache(10*time.Second, 100000)
	now := time.Unix(1_700_000_000, 0)
	for i := 0; i < 200000; i++ {
		now = now.Add(time.Millisecond) // 1000 new keys per second
		c.put([]policy.Key{policy.MessageIDKey(fmt.Sprint(i))}, []policy.ThreadID{"1111111111111111"}, now)
	}
	if n := len(c.entries); n > 21000 {
		t.Fatalf("%d entries after 200 s at 1000/s with a 10 s TTL; want about 10,000-20,000", n)
	}
}

// TestLinkCacheIsCapped: more fresh keys than the cap, all at once, never
// hold more than the cap.
func TestLinkCacheIsCapped(t *testing.T) {
	c := newLinkCache(10*time.Second, 1000)
	now := time.Unix(1_700_000_000, 0)
	for i := range 5000 {
		c.put([]policy.Key{policy.MessageIDKey(fmt.Sprint(i))}, []policy.ThreadID{"1111111111111111"}, now)
		if n := len(c.entries); n > 1000 {
			t.Fatalf("%d entries after %d puts with a cap of 1000", n, i+1)
		}
	}
	if _, ok := c.lookup([]policy.Key{policy.MessageIDKey("4999")}, now); !ok {
		t.Error("the newest key is not cached")
	}
}

// linkCacher is what Filter.record asks of a link cache; BenchmarkLinkCache
// runs linkCache and the maintained expirable LRU through it.
type linkCacher interface {
	lookup(keys []policy.Key, now time.Time) ([]policy.ThreadID, bool)
	put(keys []policy.Key, threads []policy.ThreadID, now time.Time)
}

// lruLinkCache is linkCache's contract on hashicorp/golang-lru/v2/expirable
// (its size cap, its TTL, and the entry's expiry by the caller's clock):
// the alternative BenchmarkLinkCache measures.
type lruLinkCache struct {
	ttl time.Duration
	lru *expirable.LRU[policy.Key, linkEntry]
}

func newLRULinkCache(ttl time.Duration, max int) *lruLinkCache {
	return &lruLinkCache{ttl: ttl, lru: expirable.NewLRU[policy.Key, linkEntry](max, nil, ttl)}
}

func (c *lruLinkCache) lookup(keys []policy.Key, now time.Time) ([]policy.ThreadID, bool) {
	found := make([]policy.ThreadID, len(keys))
	for i, k := range keys {
		e, hit := c.lru.Get(k)
		if !hit || now.After(e.expires) {
			return nil, false
		}
		found[i] = e.thread
	}
	return found, true
}

func (c *lruLinkCache) put(keys []policy.Key, threads []policy.ThreadID, now time.Time) {
	exp := now.Add(c.ttl)
	for i, k := range keys {
		if i < len(threads) {
			c.lru.Add(k, linkEntry{thread: threads[i], expires: exp})
		}
	}
}

// BenchmarkLinkCache is the link cache as Filter.record uses it, one op per
// large-audience message, from many milter connections at once: replies
// to 1000 storming threads; every other one has no References and looks
// up its parent and subject key (put after a miss, as after Resolve);
// every message then puts its own id and the subject key. below-cap: the
// own ids come round again after 32768 messages, so the cache stays under
// its cap (a daemon below 10,000 large-audience messages a second);
// at-cap: every own id is new, so the cache is full.
//
//	go test -run '^$' -bench LinkCache -benchmem -count 6 ./milter/
func BenchmarkLinkCache(b *testing.B) {
	const threads = 1000
	parent, subject := make([]policy.Key, threads), make([]policy.Key, threads)
	thread := make([]policy.ThreadID, threads)
	for i := range threads {
		parent[i] = policy.MessageIDKey(fmt.Sprintf("root-%d@example.org", i))
		subject[i] = policy.Key(fmt.Sprintf("subj:%016x", i))
		thread[i] = policy.ThreadID(fmt.Sprintf("%016x", i))
	}
	own := make([]policy.Key, 1<<18)
	for i := range own {
		own[i] = policy.MessageIDKey(fmt.Sprintf("reply-%d@example.org", i))
	}
	for _, regime := range []struct {
		name string
		own  int // distinct own ids
	}{{"below-cap", 1 << 15}, {"at-cap", len(own)}} {
		for _, impl := range []struct {
			name string
			new  func() linkCacher
		}{
			{"hand", func() linkCacher { return newLinkCache(linkCacheTTL, linkCacheMax) }},
			{"lru", func() linkCacher { return newLRULinkCache(linkCacheTTL, linkCacheMax) }},
		} {
			b.Run(regime.name+"/"+impl.name, func(b *testing.B) {
				benchLinkCache(b, impl.new(), parent, subject, own[:regime.own], thread)
			})
		}
	}
}

func benchLinkCache(b *testing.B, c linkCacher, parent, subject, own []policy.Key, thread []policy.ThreadID) {
	threads, owns := uint64(len(thread)), uint64(len(own))
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(8) // like many milter connections at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			t := i % threads
			now := time.Now()
			if i%2 == 0 {
				keys := []policy.Key{parent[t], subject[t]}
				if _, ok := c.lookup(keys, now); !ok {
					c.put(keys, []policy.ThreadID{thread[t], thread[t]}, now)
				}
			}
			c.put([]policy.Key{own[i%owns], subject[t]}, []policy.ThreadID{thread[t], thread[t]}, now)
		}
	})
}
