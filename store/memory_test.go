package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// memoryHarness adds what the suite needs to poke at a memory store.
type memoryHarness struct{ *store.Memory }

func (h memoryHarness) SetRawOverride(t *testing.T, th policy.ThreadID, v string) {
	h.Memory.SetRawOverride(th, v)
}

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return memoryHarness{store.NewMemory()}
	})
}

// TestMemoryStaysFlat: 100,000 messages to distinct threads, each retained
// for a second of their time (100 retention periods), leave only about a
// second's worth of threads and links behind.
func TestMemoryStaysFlat(t *testing.T) {
	m := store.NewMemory()
	base := time.Now()
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const live = 1000 // records per retention period: one per ms for 1s
	l := policy.Limits{MaxReplies: 10, Window: 500 * time.Millisecond, BlockFor: 100 * time.Millisecond}
	ctx := context.Background()
	peakThreads, peakLinks := 0, 0
	for i := range n {
		r := store.Record{
			Thread: storetest.NewThread(), Message: storetest.NewKey(), Kind: policy.KindReply,
			Audience: 3000, Sender: "a@example.org", Now: base.Add(time.Duration(i) * time.Millisecond),
			Limits: l, Retention: time.Second, Links: []policy.Key{storetest.NewKey(), storetest.NewKey()},
		}
		if _, err := m.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			th, ln := m.Sizes()
			peakThreads, peakLinks = max(peakThreads, th), max(peakLinks, ln)
		}
	}
	t.Logf("%d records: at most %d threads and %d links held (%d and %d live)", n, peakThreads, peakLinks, live, 2*live)
	if peakThreads > 2*live || peakLinks > 2*2*live {
		t.Errorf("held up to %d threads and %d links, want at most twice the %d and %d live", peakThreads, peakLinks, live, 2*live)
	}
}

// TestMemoryShrinksAfterSpike: once a spike of threads has expired, the maps
// are rebuilt at their new size (Go maps never shrink by themselves).
func TestMemoryShrinksAfterSpike(t *testing.T) {
	m := store.NewMemory()
	base := time.Now()
	l := policy.Limits{Window: time.Second, BlockFor: time.Second}
	rec := func(now time.Time) {
		r := store.Record{
			Thread: storetest.NewThread(), Kind: policy.KindReply, Audience: 3000, Now: now,
			Limits: l, Retention: time.Second, Links: []policy.Key{storetest.NewKey()},
		}
		if _, err := m.Record(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	const spike = 40_000
	for range spike {
		rec(base)
	}
	if th, ln := m.Peaks(); th != spike || ln != spike {
		t.Fatalf("peaks after the spike = %d, %d, want %d", th, ln, spike)
	}
	for i := range 20_000 { // the spike expires; a trickle goes on
		rec(base.Add(2*time.Second + time.Duration(i)*time.Millisecond))
	}
	// A map is rebuilt below a quarter of its peak, and its peak starts
	// again from there; the next record's entry, added before its sweep,
	// may take it back to a quarter, never above.
	th, ln := m.Peaks()
	if th > spike/4 || ln > spike/4 {
		t.Errorf("peaks after the spike expired = %d, %d: maps not rebuilt", th, ln)
	}
}

func BenchmarkMemoryRecord(b *testing.B) {
	storetest.BenchRecord(b, store.NewMemory())
}
