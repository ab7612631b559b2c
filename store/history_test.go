package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

func historyCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestRedisHistoryBadValues: what an operator's redis-cli mistake, or
// hostile data, leaves in the history keys is skipped and reported, never
// fatal to the listing, never a panic.
func TestRedisHistoryBadValues(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k := historyCtx(t), s.Keys()
	now := time.Now()
	good, bad, wrong := storetest.NewThread(), storetest.NewThread(), storetest.NewThread()
	for _, th := range []policy.ThreadID{good, bad, wrong} {
		if err := s.SaveHistory(ctx, storetest.Entry(th, now), time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	redisenv.CLI(t, addr, "HSET", k.HistoryEntry(bad), "summary", `{"subject": "cut off`)
	redisenv.CLI(t, addr, "DEL", k.HistoryEntry(wrong))
	redisenv.CLI(t, addr, "SET", k.HistoryEntry(wrong), "a string")
	redisenv.CLI(t, addr, "ZADD", k.History(), strconv.FormatInt(now.UnixMilli(), 10), "not:a{thread}")

	got, err := s.History(ctx, now.Add(-time.Hour), 0)
	if err != nil {
		t.Fatalf("History with bad values: %v", err)
	}
	if len(got) != 1 || got[0].Thread != good {
		t.Errorf("History = %d entries, want only %s", len(got), good)
	}
	problems, total := s.HistoryProblems()
	if total != 3 || len(problems) != 3 {
		t.Fatalf("HistoryProblems = %d (%+v), want 3", total, problems)
	}
	for _, key := range []string{k.HistoryEntry(bad), k.HistoryEntry(wrong), k.History()} {
		found := false
		for _, p := range problems {
			found = found || p.Key == key && p.Why != ""
		}
		if !found {
			t.Errorf("no problem names %s: %+v", key, problems)
		}
	}
	for _, th := range []policy.ThreadID{bad, wrong} {
		if _, err := s.HistoryOf(ctx, th); !errors.Is(err, store.ErrData) {
			t.Errorf("HistoryOf a bad value: %v, want ErrData", err)
		}
	}

	// A bad queue id among good ones: skipped.
	ref := store.QueueRef{Node: "mx1", ID: "ABC", Kind: "reply", Status: store.QueueAccepted, Time: now}
	if err := s.AddQueued(ctx, good, []store.QueueRef{ref}, time.Hour); err != nil {
		t.Fatal(err)
	}
	redisenv.CLI(t, addr, "RPUSH", k.Queued(good), "\x1b[31mnot json")
	if err := s.AddQueued(ctx, good, []store.QueueRef{ref}, time.Hour); err != nil {
		t.Fatal(err)
	}
	refs, err := s.Queued(ctx, good)
	if err != nil || len(refs) != 2 {
		t.Errorf("Queued with a bad value = %v, %v, want the 2 good ones", refs, err)
	}
	if _, total := s.HistoryProblems(); total != 4+2 { // 2 from the HistoryOf calls
		t.Errorf("HistoryProblems total %d, want 6", total)
	}
}

// TestRedisHistoryOperator: an operator forgets one storm with redis-cli
// DEL of its entry; the listing drops it and tidies the index. History
// survives a restart: a new store on the same Redis and prefix lists it.
func TestRedisHistoryOperator(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k := historyCtx(t), s.Keys()
	now := time.Now()
	keep, forget := storetest.NewThread(), storetest.NewThread()
	for _, th := range []policy.ThreadID{keep, forget} {
		if err := s.SaveHistory(ctx, storetest.Entry(th, now), time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	redisenv.CLI(t, addr, "DEL", k.HistoryEntry(forget))
	got, err := s.History(ctx, now.Add(-time.Hour), 0)
	if err != nil || len(got) != 1 || got[0].Thread != keep {
		t.Fatalf("History after DEL = %d entries, %v; want only %s", len(got), err, keep)
	}
	if score := redisenv.CLI(t, addr, "ZSCORE", k.History(), string(forget)); score != "" {
		t.Errorf("index still lists the forgotten thread (score %q)", score)
	}
	s.Close()

	again := openRedisPrefix(t, addr, k.Prefix())
	got, err = again.History(ctx, now.Add(-time.Hour), 0)
	if err != nil || len(got) != 1 || got[0].Thread != keep || got[0].Refused != 70 {
		t.Errorf("History after a restart = %+v, %v; want %s", got, err, keep)
	}
}

func openRedisPrefix(t testing.TB, addr, prefix string) *store.Redis {
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Prefix: prefix, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMemoryHistoryClock: the memory store expires history by its clock:
// an entry kept 90 days is there on day 89 and gone on day 91; queue ids
// are gone after their retention.
func TestMemoryHistoryClock(t *testing.T) {
	m := store.NewMemory()
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	m.SetClock(func() time.Time { return time.Unix(0, now.Load()) })
	ctx, th := historyCtx(t), storetest.NewThread()
	const keep = 90 * 24 * time.Hour
	if err := m.SaveHistory(ctx, storetest.Entry(th, start), keep, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.AddQueued(ctx, th, storetest.Entry(th, start).Queued, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		day          int
		entry, queue bool
	}{{6, true, true}, {8, true, false}, {89, true, false}, {91, false, false}} {
		now.Store(start.Add(time.Duration(tc.day) * 24 * time.Hour).UnixNano())
		_, err := m.HistoryOf(ctx, th)
		listed, lerr := m.History(ctx, start.Add(-time.Hour), 0)
		refs, qerr := m.Queued(ctx, th)
		if err == nil != tc.entry || (len(listed) == 1) != tc.entry || lerr != nil {
			t.Errorf("day %d: HistoryOf %v, History %d entries; want kept=%v", tc.day, err, len(listed), tc.entry)
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
	m := store.NewMemoryWith(store.MemoryConfig{MaxThreads: 3})
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	m.SetClock(func() time.Time { return time.Unix(0, now.Load()) })
	ctx := historyCtx(t)
	ref := []store.QueueRef{{Node: "mx1", ID: "A1", Kind: "reply", Status: store.QueueAccepted, Time: start}}
	ths := make([]policy.ThreadID, 5)
	for i := range ths {
		ths[i] = storetest.NewThread()
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
	extra := storetest.NewThread()
	if err := m.AddQueued(ctx, extra, ref, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, th := range []policy.ThreadID{ths[3], ths[4], extra} {
		if refs, _ := m.Queued(ctx, th); len(refs) != 1 {
			t.Errorf("%s lost its queue ids to an expired thread's", th)
		}
	}
}

// TestHistoryConcurrent: saves, queue ids and listings from many
// goroutines at once (run with -race), on both stores.
func TestHistoryConcurrent(t *testing.T) {
	addr := redisenv.Start(t)
	for name, s := range map[string]store.History{"memory": store.NewMemory(), "redis": openRedis(t, addr, false)} {
		t.Run(name, func(t *testing.T) {
			ctx, now := historyCtx(t), time.Now()
			th := storetest.NewThread()
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 8 {
				wg.Go(func() {
					for i := range 20 {
						e := storetest.Entry(storetest.NewThread(), now.Add(time.Duration(g*100+i)*time.Millisecond))
						ref := store.QueueRef{Node: fmt.Sprintf("mx%d", g), ID: fmt.Sprintf("Q%d-%d", g, i), Time: now}
						for _, err := range []error{
							s.SaveHistory(ctx, e, time.Hour, 100),
							s.AddQueued(ctx, th, []store.QueueRef{ref}, time.Hour),
							func() error { _, err := s.History(ctx, now.Add(-time.Hour), 50); return err }(),
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
			got, err := s.History(ctx, now.Add(-time.Hour), 0)
			if err != nil || len(got) != 100 {
				t.Errorf("History after 160 saves with max 100: %d entries, %v", len(got), err)
			}
			refs, err := s.Queued(ctx, th)
			if err != nil || len(refs) != 160 {
				t.Errorf("Queued after 160 adds: %d, %v", len(refs), err)
			}
		})
	}
}

// realisticStorm is a storm as the cost figures count it (docs/redis.md):
// 80 reply senders, 81 queue ids (the original and 80 replies), a
// 60-character subject, 2 lists.
func realisticStorm(th policy.ThreadID, now time.Time) store.HistoryEntry {
	e := storetest.Entry(th, now)
	e.Subject = strings.Repeat("Q3 all-staff town hall: agenda and dial-in", 2)[:60]
	e.Senders, e.Queued = map[string]string{}, []store.QueueRef{e.Queued[0]}
	for i := range 80 {
		sender := fmt.Sprintf("firstname.lastname%02d@nhs.example.org", i)
		status := "counted"
		if i >= 10 {
			status = "blocked"
		}
		e.Senders[sender] = status
		e.Queued = append(e.Queued, store.QueueRef{
			Node: fmt.Sprintf("mx%d.example.org", i%3), ID: fmt.Sprintf("4Q%08X", i), Kind: "reply",
			Sender: sender, Status: store.QueueAccepted, Time: now,
		})
	}
	return e
}

// TestRedisHistoryCost measures what one realistic storm costs in Redis
// (MEMORY USAGE of its entry and queue ids) and what 1,000 of them add to
// used_memory, and holds them to the figures docs/redis.md states.
func TestRedisHistoryCost(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k, now := historyCtx(t), s.Keys(), time.Now()
	used := func() int64 {
		for _, line := range strings.Split(redisenv.CLI(t, addr, "INFO", "memory"), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("no used_memory in INFO memory")
		return 0
	}
	usage := func(key string) int64 {
		n, err := strconv.ParseInt(redisenv.CLI(t, addr, "MEMORY", "USAGE", key, "SAMPLES", "0"), 10, 64)
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", key, err)
		}
		return n
	}
	const storms = 1000
	ths := make([]policy.ThreadID, storms)
	entries := make([]store.HistoryEntry, storms)
	for i := range ths {
		ths[i] = storetest.NewThread()
		entries[i] = realisticStorm(ths[i], now.Add(time.Duration(i)*time.Millisecond))
	}
	before := used()
	for _, e := range entries {
		if err := s.SaveHistory(ctx, e, 90*24*time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	history := used() - before
	for _, e := range entries {
		if err := s.AddQueued(ctx, e.Thread, e.Queued, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	queues := used() - before - history
	entry, queue := usage(k.HistoryEntry(ths[0])), usage(k.Queued(ths[0]))
	t.Logf("one storm (80 senders, 81 queue ids, 60-char subject, 2 lists): entry %d B, queue id list %d B (MEMORY USAGE)", entry, queue)
	t.Logf("%d storms: used_memory grew by %d B for the entries and index (%d B per storm, kept report.history), then %d B for the queue id lists (%d B per storm, kept store.retention)",
		storms, history, history/storms, queues, queues/storms)
	// The bounds docs/redis.md states: under 20 KiB a storm's entry with
	// its index member, under 16 KiB its queue id list.
	if entry > 20<<10 || history/storms > 20<<10 || queues/storms > 16<<10 {
		t.Errorf("a storm costs more than docs/redis.md says: entry %d B, %d B per storm in history, %d B of queue ids", entry, history/storms, queues/storms)
	}
}

// BenchmarkHistory: History(since, 1000) over 1,000 realistic storms.
func BenchmarkHistory(b *testing.B) {
	addr := redisenv.Start(b)
	for name, s := range map[string]store.History{"memory": store.NewMemory(), "redis": openRedis(b, addr, false)} {
		b.Run(name, func(b *testing.B) {
			ctx, now := historyCtx(b), time.Now()
			for i := range 1000 {
				if err := s.SaveHistory(ctx, realisticStorm(storetest.NewThread(), now.Add(time.Duration(i)*time.Millisecond)), time.Hour, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := s.History(ctx, now.Add(-time.Minute), 1000)
				if err != nil || len(got) != 1000 {
					b.Fatalf("History: %d entries, %v", len(got), err)
				}
			}
		})
	}
}

// TestRedisHistoryOversized: an entry written past the bounds by someone
// else (redis-cli, another program) is read back within them.
func TestRedisHistoryOversized(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k, now := historyCtx(t), s.Keys(), time.Now()
	long := strings.Repeat("x", store.HistoryTextMax+100)
	for _, tc := range []struct {
		name, summary, detail string
	}{
		{"long text in place", fmt.Sprintf(`{"subject":%q,"lists":[%q],"last_seen":%d}`, long, long, now.UnixMilli()),
			fmt.Sprintf(`{"senders":{"a@example.org":%q},"queued":[{"sender":%q}]}`, long, long)},
		{"long sender key", fmt.Sprintf(`{"last_seen":%d}`, now.UnixMilli()), fmt.Sprintf(`{"senders":{%q:"counted"}}`, long)},
	} {
		th := storetest.NewThread()
		redisenv.CLI(t, addr, "HSET", k.HistoryEntry(th), "summary", tc.summary, "detail", tc.detail)
		e, err := s.HistoryOf(ctx, th)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		texts := []string{e.Subject}
		for k, v := range e.Senders {
			texts = append(texts, k, v)
		}
		texts = append(texts, e.Lists...)
		for _, r := range e.Queued {
			texts = append(texts, r.Sender)
		}
		for _, x := range texts {
			if n := len([]rune(x)); n > store.HistoryTextMax {
				t.Errorf("%s: a text of %d runes came back, want at most %d", tc.name, n, store.HistoryTextMax)
			}
		}
	}
}
