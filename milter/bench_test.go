package milter

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Benchmarks of Filter.Decide, the whole per-message decision without the
// milter protocol: go test -run '^$' -bench Decide -benchmem ./milter/

func benchFilter(b *testing.B, st, fallback store.Store) *Filter {
	b.Helper()
	cfg := testConfig()
	cfg.Policy = policy.Defaults()
	cfg.Lists = map[string]int{listAddr: 20000}
	cfg.Recipients = policy.Recipients{Delimiter: "+", LocalDomains: []string{"example.org"}}
	f, err := NewFilter(cfg, st, fallback, discardLogger(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// smallMessage is new mail to two people: decided without the store.
func smallMessage(i uint64) *Message {
	return &Message{
		Sender: "ann@example.org",
		Rcpts:  []string{"bob@example.org", "carol@example.org"},
		Headers: policy.Headers{
			MessageID: fmt.Sprintf("<small-%d@example.org>", i),
			Subject:   "Quarterly figures",
			From:      "Ann <ann@example.org>",
			To:        []string{"Bob <bob@example.org>, carol@example.org"},
		},
	}
}

// largeReply is a reply-all with References to one of 1000 threads (each
// thread storms, crosses max_replies and is blocked, as in a storm).
func largeReply(run string, i uint64) *Message {
	sender := fmt.Sprintf("user%d@example.org", i%5000)
	root := fmt.Sprintf("<root-%d.%s@example.org>", i%1000, run)
	return &Message{
		Sender: sender,
		Rcpts:  []string{listAddr, "boss@example.org"},
		Headers: policy.Headers{
			MessageID:  fmt.Sprintf("<reply-%d.%s@example.org>", i, run),
			InReplyTo:  root,
			References: root,
			Subject:    "RE: Test message, please ignore",
			From:       "<" + sender + ">",
			To:         []string{listAddr + ", boss@example.org"},
		},
	}
}

func benchDecide(b *testing.B, f *Filter, msg func(uint64) *Message, wantStored bool) {
	var seq atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // like many milter connections at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := f.Decide(ctx, msg(seq.Add(1)))
			if d.Stored != wantStored || d.Fallback {
				b.Errorf("stored=%v fallback=%v rule=%s", d.Stored, d.Fallback, d.Rule)
				return
			}
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	run := fmt.Sprintf("%x", randomThread())
	b.Run("small/memory", func(b *testing.B) {
		benchDecide(b, benchFilter(b, store.NewMemory(), nil), smallMessage, false)
	})
	b.Run("large-reply/memory", func(b *testing.B) {
		benchDecide(b, benchFilter(b, store.NewMemory(), nil), func(i uint64) *Message { return largeReply(run+"m", i) }, true)
	})
	b.Run("large-reply/memory/list-policy", func(b *testing.B) { // the message's list has a policy of its own
		f := benchFilter(b, store.NewMemory(), nil)
		g := *f.globals.Load()
		g.site.SetList(listAddr, policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 5}, Action: policy.ConfigHold, Posters: []string{"@example.org"}})
		f.globals.Store(&g)
		benchDecide(b, f, func(i uint64) *Message { return largeReply(run+"p", i) }, true)
	})
	b.Run("large-reply/redis", func(b *testing.B) {
		r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{redisenv.Start(b)}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = r.Close() })
		benchDecide(b, benchFilter(b, r, store.NewMemory()), func(i uint64) *Message { return largeReply(run+"r", i) }, true)
	})
}
