package history_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/history/historytest"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
)

func TestMemory(t *testing.T) {
	historytest.Run(t, func(*testing.T) history.Store { return history.NewMemory(0) })
}

func historyCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestMemoryClock: the memory history expires by its clock:
// an entry kept 90 days is there on day 89 and gone on day 91; queue ids
// are gone after their retention.
func TestMemoryClock(t *testing.T) {
	m := history.NewMemory(0)
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	m.SetClock(func() time.Time { return time.Unix(0, now.Load()) })
	ctx, th := historyCtx(t), historytest.NewThread()
	const keep = 90 * 24 * time.Hour
	if err := m.Save(ctx, historytest.Entry(th, start), keep, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.AddQueued(ctx, th, historytest.Entry(th, start).Queued, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		day          int
		entry, queue bool
	}{{6, true, true}, {8, true, false}, {89, true, false}, {91, false, false}} {
		now.Store(start.Add(time.Duration(tc.day) * 24 * time.Hour).UnixNano())
		_, err := m.Get(ctx, th)
		listed, lerr := m.List(ctx, start.Add(-time.Hour), 0)
		refs, qerr := m.Queued(ctx, th)
		if err == nil != tc.entry || (len(listed) == 1) != tc.entry || lerr != nil {
			t.Errorf("day %d: Get %v, List %d entries; want kept=%v", tc.day, err, len(listed), tc.entry)
		}
		if qerr != nil || (len(refs) > 0) != tc.queue {
			t.Errorf("day %d: Queued %d refs, %v; want kept=%v", tc.day, len(refs), qerr, tc.queue)
		}
	}
}

// TestMemoryQueuedThreadsBound: the threads with queue ids are bounded by
// store.memory_max_threads; the one whose ids expire first leaves first,
// so an expired one before any live one.
func TestMemoryQueuedThreadsBound(t *testing.T) {
	m := history.NewMemory(3)
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	m.SetClock(func() time.Time { return time.Unix(0, now.Load()) })
	ctx := historyCtx(t)
	ref := []history.QueueRef{{Node: "mx1", ID: "A1", Kind: "reply", Status: history.QueueAccepted, Time: start}}
	ths := make([]policy.ThreadID, 5)
	for i := range ths {
		ths[i] = historytest.NewThread()
		now.Store(start.Add(time.Duration(i) * time.Second).UnixNano())
		if err := m.AddQueued(ctx, ths[i], ref, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for i, th := range ths {
		refs, err := m.Queued(ctx, th)
		if err != nil || (len(refs) > 0) != (i >= 2) {
			t.Errorf("thread %d: %d refs, %v; want kept=%v (the last 3)", i, len(refs), err, i >= 2)
		}
	}
	// Once the oldest live ones have expired, a new thread evicts none of
	// the younger ones.
	now.Store(start.Add(time.Hour + 2500*time.Millisecond).UnixNano()) // ths[2] expired, ths[3] not
	extra := historytest.NewThread()
	if err := m.AddQueued(ctx, extra, ref, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, th := range []policy.ThreadID{ths[3], ths[4], extra} {
		if refs, _ := m.Queued(ctx, th); len(refs) != 1 {
			t.Errorf("%s lost its queue ids to an expired thread's", th)
		}
	}
}

// TestConcurrent: saves, queue ids and listings from many
// goroutines at once (run with -race), on both stores.
func TestConcurrent(t *testing.T) {
	addr := redisenv.Start(t)
	for name, s := range map[string]history.Store{"memory": history.NewMemory(0), "redis": openRedis(t, addr, false)} {
		t.Run(name, func(t *testing.T) {
			ctx, now := historyCtx(t), time.Now()
			th := historytest.NewThread()
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 8 {
				wg.Go(func() {
					for i := range 20 {
						e := historytest.Entry(historytest.NewThread(), now.Add(time.Duration(g*100+i)*time.Millisecond))
						ref := history.QueueRef{Node: fmt.Sprintf("mx%d", g), ID: fmt.Sprintf("Q%d-%d", g, i), Time: now}
						for _, err := range []error{
							s.Save(ctx, e, time.Hour, 100),
							s.AddQueued(ctx, th, []history.QueueRef{ref}, time.Hour),
							func() error { _, err := s.List(ctx, now.Add(-time.Hour), 50); return err }(),
						} {
							if err != nil {
								errs <- err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			got, err := s.List(ctx, now.Add(-time.Hour), 0)
			if err != nil || len(got) != 100 {
				t.Errorf("List after 160 saves with max 100: %d entries, %v", len(got), err)
			}
			refs, err := s.Queued(ctx, th)
			if err != nil || len(refs) != 160 {
				t.Errorf("Queued after 160 adds: %d, %v", len(refs), err)
			}
		})
	}
}
