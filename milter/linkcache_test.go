package milter

import (
	"fmt"
	"testing"
	"time"

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
	if _, ok := c.lookup(append(k, policy.MessageIDKey("c@example.org")), now); ok {
		t.Fatal("a partly cached key list must miss")
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
