package storetest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// BenchRecord measures s.Record from parallel goroutines: replies with two
// links each, spread over a thousand threads that each reach the limit and
// block, as in a storm.
func BenchRecord(b *testing.B, s store.Store) {
	threads := make([]policy.ThreadID, 1000)
	for i := range threads {
		threads[i] = NewThread()
	}
	links := make([]policy.Key, 4096)
	for i := range links {
		links[i] = NewKey()
	}
	prefix := randHex(16)
	var seq atomic.Uint64
	now, l := time.Now(), limits(10, 0)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // goroutines per CPU: like many milter sessions at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			r := store.Record{
				Thread:  threads[i%uint64(len(threads))],
				Message: policy.Key(prefix + strconv.FormatUint(i, 16)),
				Kind:    policy.KindReply, Audience: 3000, Sender: "replier@example.org", Subject: "Re: all hands",
				Now: now, Limits: l, Retention: time.Hour,
				Links: []policy.Key{links[i%uint64(len(links))], links[(i+1)%uint64(len(links))]},
			}
			if _, err := s.Record(ctx, r); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
}
