package store_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestKeys: the key names operators read and write with redis-cli (the
// list in store/keys.go), built by the one place that builds them.
func TestKeys(t *testing.T) {
	const th, id = policy.ThreadID("0123456789abcdef"), policy.Key("00112233445566778899aabbccddeeff")
	k := store.NewKeys("acme:sg:")
	for got, want := range map[string]string{
		k.Replies(th):      "acme:sg:{0123456789abcdef}:replies",
		k.Meta(th):         "acme:sg:{0123456789abcdef}:meta",
		k.Block(th):        "acme:sg:{0123456789abcdef}:block",
		k.Override(th):     "acme:sg:{0123456789abcdef}:override",
		k.Senders(th):      "acme:sg:{0123456789abcdef}:senders",
		k.Link(id):         "acme:sg:link:{00112233445566778899aabbccddeeff}",
		k.Threads(0):       "acme:sg:threads:{0}",
		k.Threads(15):      "acme:sg:threads:{15}",
		k.Storms():         "acme:sg:storms",
		k.History():        "acme:sg:history",
		k.Queued(th):       "acme:sg:{0123456789abcdef}:queued",
		k.HistoryEntry(th): "acme:sg:{0123456789abcdef}:history",
		k.Lists():          "acme:sg:lists",
		k.ListPolicy():     "acme:sg:listpolicy",
		k.Exempt():         "acme:sg:exempt",
		k.Posters():        "acme:sg:posters",
		k.Mode():           "acme:sg:mode",
		k.Events():         "acme:sg:events",
		k.Prefix():         "acme:sg:",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got, want := k.Thread(th), []string{k.Replies(th), k.Meta(th), k.Block(th), k.Override(th), k.Senders(th)}; !slices.Equal(got, want) {
		t.Errorf("Thread = %q, want %q", got, want)
	}
	if got := store.NewKeys("").Mode(); got != store.DefaultPrefix+"mode" {
		t.Errorf("default prefix: Mode = %q", got)
	}
	if got := store.NewKeys(`a*b?[c]\:`).Pattern(); got != `a\*b\?\[c\]\\:*` {
		t.Errorf("Pattern = %q", got)
	}
	if got, want := k.Unexpiring(), append(k.ThreadIndex(), "acme:sg:storms", "acme:sg:blocked", "acme:sg:history", "acme:sg:lists", "acme:sg:listpolicy", "acme:sg:exempt", "acme:sg:posters", "acme:sg:mode"); !slices.Equal(got, want) {
		t.Errorf("Unexpiring = %q, want %q", got, want)
	}
	if n := len(k.ThreadIndex()); n != store.ThreadShards {
		t.Errorf("ThreadIndex has %d keys, want %d", n, store.ThreadShards)
	}
}

// TestThreadShardsSpread: thread ids spread over every shard of the index,
// none taking much more than its share, and the shards' hash tags are
// distinct slots.
func TestThreadShardsSpread(t *testing.T) {
	counts := make([]int, store.ThreadShards)
	const n = 16000
	for i := range n {
		counts[store.ThreadShard(policy.ThreadID(fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)))]++
	}
	for i, c := range counts {
		if c < n/store.ThreadShards/2 || c > 2*n/store.ThreadShards {
			t.Errorf("shard %d holds %d of %d threads: %v", i, c, n, counts)
		}
	}
}
