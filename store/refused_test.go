package store_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// blockedStorm records a storm in a thread of its own (limit 1: the second
// reply crosses) and returns it.
func blockedStorm(t *testing.T, m *store.Memory, now time.Time) store.Record {
	t.Helper()
	r := storetest.Reply(storetest.NewThread(), now, 3000, 1)
	for i, want := range []policy.Status{policy.StatusCounted, policy.StatusCrossed} {
		r.Message = storetest.NewKey()
		if got, err := m.Record(context.Background(), r); err != nil || got.Status != want {
			t.Fatalf("storm reply %d: %+v, %v, want %s", i+1, got, err, want)
		}
	}
	return r
}

// stillBlocked checks that the storm's next reply is refused as blocked.
func stillBlocked(t *testing.T, m *store.Memory, storm store.Record, now time.Time) {
	t.Helper()
	storm.Message, storm.Now = storetest.NewKey(), now
	got, err := m.Record(context.Background(), storm)
	if err != nil || got.Status != policy.StatusBlocked {
		t.Errorf("the storm's next reply: %+v, %v, want blocked", got, err)
	}
}

// TestMemoryRefusedAutoRepliesCostNothing: 100,500 auto-replies to 101
// mailboxes, each naming a thread of its own, refused as auto-replies,
// leave the store as they found it: the blocked storm stays blocked (its
// next reply is refused, not counted again) and the store's size is the
// same, in threads and in bytes.
func TestMemoryRefusedAutoRepliesCostNothing(t *testing.T) {
	const n = 100_500
	m := store.NewMemory() // the default bounds: 100,000 threads
	ctx, base := context.Background(), time.Now()
	storm := blockedStorm(t, m, base)
	threads, bytes := m.Size()
	start := time.Now()
	for i := range n {
		own := storetest.NewKey()
		r := store.Record{
			Thread: own.Thread(), Message: own, Kind: policy.KindAutoReply, Audience: 101,
			Sender: "away" + strconv.Itoa(i) + "@example.org", Subject: "Out of office: all hands",
			Now: base.Add(time.Duration(i) * time.Microsecond), Limits: storm.Limits,
			Retention: 24 * time.Hour, Links: []policy.Key{own},
		}
		if _, err := m.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	t2, b2 := m.Size()
	t.Logf("%d refused auto-replies in %v: threads %d -> %d, bytes %d -> %d, evictions %d",
		n, took.Round(time.Millisecond), threads, t2, bytes, b2, m.Evictions())
	if t2 != threads || b2 != bytes {
		t.Errorf("the store grew from %d threads, %d bytes to %d, %d", threads, bytes, t2, b2)
	}
	stillBlocked(t, m, storm, base.Add(time.Second))
}

// TestMemoryEvictionSparesStorms: past MaxThreads, quiet threads are
// evicted, least recently seen first, before any that stormed, is blocked
// or carries an override, however long ago those were seen.
func TestMemoryEvictionSparesStorms(t *testing.T) {
	const capN, n = 1000, 5000
	m := store.NewMemoryWith(store.MemoryConfig{MaxThreads: capN})
	ctx, base := context.Background(), time.Now()
	storm := blockedStorm(t, m, base)
	overridden := storetest.NewThread()
	if err := m.SetOverride(ctx, overridden, policy.OverrideBlock, 0); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r, _ := capRecord(base.Add(time.Millisecond+time.Duration(i)*time.Millisecond), i)
		if _, err := m.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	threads, _ := m.Size()
	if threads > capN || m.Evictions() == 0 {
		t.Errorf("%d threads held, %d evictions: want at most %d after evictions", threads, m.Evictions(), capN)
	}
	now := base.Add(n * time.Millisecond)
	if info, err := m.Thread(ctx, overridden, now); err != nil || info.Override != policy.OverrideBlock {
		t.Errorf("the overridden thread: %+v, %v, want kept with its override", info, err)
	}
	stillBlocked(t, m, storm, now)
}

// TestMemoryOneThreadBounded: 300,000 refused replies from distinct
// 1,900-byte senders, each naming a blocked storm, keep the store's
// estimate, the live heap and what they add to the process' RSS under the
// store's 256 MiB bound, and each record costs the same at the
// end as at the start (the size estimate does not walk the senders).
func TestMemoryOneThreadBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("300,000 records: not with -short")
	}
	const n = 300_000
	m := store.NewMemory()
	ctx, base := context.Background(), time.Now()
	storm := blockedStorm(t, m, base)
	pad := strings.Repeat("x", 1900-len("@example.org")-6)
	before := vmRSS()
	start, lap := time.Now(), time.Now()
	var first, last time.Duration // the first and the last 10,000 records
	for i := range n {
		r := storm
		r.Message, r.Now = storetest.NewKey(), base.Add(time.Second+time.Duration(i)*time.Microsecond)
		r.Sender = strconv.Itoa(100_000+i) + pad + "@example.org"
		got, err := m.Record(ctx, r)
		if err != nil || got.Status != policy.StatusBlocked {
			t.Fatalf("reply %d: %+v, %v, want blocked", i, got, err)
		}
		switch i {
		case 9_999:
			first, lap = time.Since(lap), time.Now()
		case n - 10_001:
			lap = time.Now()
		case n - 1:
			last = time.Since(lap)
		}
	}
	took := time.Since(start)
	_, bytes := m.Size()
	heap, rss := heapInUse(), vmRSS()
	runtime.KeepAlive(m)
	t.Logf("%d refused replies in one thread in %v (%.0f/s; first 10,000 %v, last 10,000 %v): estimate %d bytes, heap %d MiB, RSS %d -> %d MiB",
		n, took.Round(time.Millisecond), n/took.Seconds(), first.Round(time.Millisecond), last.Round(time.Millisecond),
		bytes, heap>>20, before>>20, rss>>20)
	// The RSS the records added (the race detector's shadow and earlier
	// tests' heap are the process', not this thread's), and the live heap.
	bound := store.MemoryDefaults().MaxBytes
	if grew := int64(rss) - int64(before); bytes > bound || grew > bound || int64(heap) > bound {
		t.Errorf("estimate %d bytes, RSS grew %d MiB, heap %d MiB: want each under %d MiB", bytes, grew>>20, heap>>20, bound>>20)
	}
	if last > 5*first+100*time.Millisecond {
		t.Errorf("the last 10,000 records took %v, the first %v: a record's cost grows with the thread", last, first)
	}
	if _, err := m.Thread(ctx, storm.Thread, base); errors.Is(err, store.ErrNotFound) {
		t.Errorf("the storm was evicted")
	}
}
