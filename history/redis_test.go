package history_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/history/historytest"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// redisHistory is a history on a real Redis under a prefix of its own,
// with the key names the tests poke at with redis-cli.
type redisHistory struct {
	*history.Redis
	keys   store.Keys
	client interface{ Close() error }
}

func (h redisHistory) Keys() store.Keys { return h.keys }
func (h redisHistory) Close() error     { return h.client.Close() }

var prefixSeq atomic.Int64

// openRedis opens a history on addr with a prefix of its own, so that
// tests share one server without seeing each other's keys. The client is
// closed when the test ends.
func openRedis(t testing.TB, addr string, cluster bool) redisHistory {
	t.Helper()
	return openRedisPrefix(t, addr, cluster, fmt.Sprintf("sgtest%d:", prefixSeq.Add(1)))
}

func openRedisPrefix(t testing.TB, addr string, cluster bool, prefix string) redisHistory {
	t.Helper()
	client, err := store.NewRedisClient(store.RedisConfig{
		Addrs: []string{addr}, Cluster: cluster, Prefix: prefix,
		Timeout: 5 * time.Second, // generous: -race on a small machine
	})
	if err != nil {
		t.Fatalf("NewRedisClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	keys := store.NewKeys(prefix)
	return redisHistory{Redis: history.NewRedis(client, keys), keys: keys, client: client}
}

func TestRedis(t *testing.T) {
	addr := redisenv.Start(t)
	historytest.Run(t, func(t *testing.T) history.Store { return openRedis(t, addr, false) })
}

// TestRedisCluster runs the suite against a one-node Redis Cluster, which
// refuses (CROSSSLOT) any MULTI whose keys are not in one slot, and
// against a three-node one, where a thread's entry and the index live on
// different nodes.
func TestRedisCluster(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dnodes", nodes), func(t *testing.T) {
			addr := redisenv.StartClusterOf(t, nodes)[0]
			historytest.Run(t, func(t *testing.T) history.Store { return openRedis(t, addr, true) })
		})
	}
}

// TestRedisBadValues: what an operator's redis-cli mistake, or
// hostile data, leaves in the history keys is skipped and reported, never
// fatal to the listing, never a panic.
func TestRedisBadValues(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k := historyCtx(t), s.Keys()
	now := time.Now()
	good, bad, wrong := historytest.NewThread(), historytest.NewThread(), historytest.NewThread()
	for _, th := range []policy.ThreadID{good, bad, wrong} {
		if err := s.Save(ctx, historytest.Entry(th, now), time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	redisenv.CLI(t, addr, "HSET", k.HistoryEntry(bad), "summary", `{"subject": "cut off`)
	redisenv.CLI(t, addr, "DEL", k.HistoryEntry(wrong))
	redisenv.CLI(t, addr, "SET", k.HistoryEntry(wrong), "a string")
	redisenv.CLI(t, addr, "ZADD", k.History(), strconv.FormatInt(now.UnixMilli(), 10), "not:a{thread}")

	got, err := s.List(ctx, now.Add(-time.Hour), 0)
	if err != nil {
		t.Fatalf("List with bad values: %v", err)
	}
	if len(got) != 1 || got[0].Thread != good {
		t.Errorf("List = %d entries, want only %s", len(got), good)
	}
	problems, total := s.Problems()
	if total != 3 || len(problems) != 3 {
		t.Fatalf("Problems = %d (%+v), want 3", total, problems)
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
		if _, err := s.Get(ctx, th); !errors.Is(err, history.ErrData) {
			t.Errorf("Get a bad value: %v, want ErrData", err)
		}
	}

	// A bad queue id among good ones: skipped.
	ref := history.QueueRef{Node: "mx1", ID: "ABC", Kind: "reply", Status: history.QueueAccepted, Time: now}
	if err := s.AddQueued(ctx, good, []history.QueueRef{ref}, time.Hour); err != nil {
		t.Fatal(err)
	}
	redisenv.CLI(t, addr, "RPUSH", k.Queued(good), "\x1b[31mnot json")
	if err := s.AddQueued(ctx, good, []history.QueueRef{ref}, time.Hour); err != nil {
		t.Fatal(err)
	}
	refs, err := s.Queued(ctx, good)
	if err != nil || len(refs) != 2 {
		t.Errorf("Queued with a bad value = %v, %v, want the 2 good ones", refs, err)
	}
	if _, total := s.Problems(); total != 4+2 { // 2 from the Get calls
		t.Errorf("Problems total %d, want 6", total)
	}
}

// TestRedisKeyNames: on the wire the history is the three keys operators
// and docs/redis.md name, under the default prefix, the thread id as the
// hash tag of its own two; nothing else is written.
func TestRedisKeyNames(t *testing.T) {
	addr := redisenv.Start(t)
	h := openRedisPrefix(t, addr, false, store.DefaultPrefix)
	ctx, th, now := historyCtx(t), historytest.NewThread(), time.Now()
	if err := h.Save(ctx, historytest.Entry(th, now), time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.AddQueued(ctx, th, historytest.Entry(th, now).Queued, time.Hour); err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(redisenv.CLI(t, addr, "KEYS", "*"))
	slices.Sort(got)
	want := []string{"stormguard:history", "stormguard:{" + string(th) + "}:history", "stormguard:{" + string(th) + "}:queued"}
	if !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	for key, typ := range map[string]string{want[0]: "zset", want[1]: "hash", want[2]: "list"} {
		if got := redisenv.CLI(t, addr, "TYPE", key); got != typ {
			t.Errorf("TYPE %s = %s, want %s", key, got, typ)
		}
	}
}

// TestRedisOperator: an operator forgets one storm with redis-cli
// DEL of its entry; the listing drops it and tidies the index. History
// survives a restart: a new store on the same Redis and prefix lists it.
func TestRedisOperator(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k := historyCtx(t), s.Keys()
	now := time.Now()
	keep, forget := historytest.NewThread(), historytest.NewThread()
	for _, th := range []policy.ThreadID{keep, forget} {
		if err := s.Save(ctx, historytest.Entry(th, now), time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	redisenv.CLI(t, addr, "DEL", k.HistoryEntry(forget))
	got, err := s.List(ctx, now.Add(-time.Hour), 0)
	if err != nil || len(got) != 1 || got[0].Thread != keep {
		t.Fatalf("List after DEL = %d entries, %v; want only %s", len(got), err, keep)
	}
	if score := redisenv.CLI(t, addr, "ZSCORE", k.History(), string(forget)); score != "" {
		t.Errorf("index still lists the forgotten thread (score %q)", score)
	}
	s.Close()

	again := openRedisPrefix(t, addr, false, k.Prefix())
	got, err = again.List(ctx, now.Add(-time.Hour), 0)
	if err != nil || len(got) != 1 || got[0].Thread != keep || got[0].Refused != 70 {
		t.Errorf("List after a restart = %+v, %v; want %s", got, err, keep)
	}
}

// realisticStorm is a storm as the cost figures count it (docs/redis.md):
// 80 reply senders, 81 queue ids (the original and 80 replies), a
// 60-character subject, 2 lists.
func realisticStorm(th policy.ThreadID, now time.Time) history.Entry {
	e := historytest.Entry(th, now)
	e.Subject = strings.Repeat("Q3 all-staff town hall: agenda and dial-in", 2)[:60]
	e.Senders, e.Queued = map[string]string{}, []history.QueueRef{e.Queued[0]}
	for i := range 80 {
		sender := fmt.Sprintf("firstname.lastname%02d@nhs.example.org", i)
		status := "counted"
		if i >= 10 {
			status = "blocked"
		}
		e.Senders[sender] = status
		e.Queued = append(e.Queued, history.QueueRef{
			Node: fmt.Sprintf("mx%d.example.org", i%3), ID: fmt.Sprintf("4Q%08X", i), Kind: "reply",
			Sender: sender, Status: history.QueueAccepted, Time: now,
		})
	}
	return e
}

// TestRedisCost measures what one realistic storm costs in Redis
// (MEMORY USAGE of its entry and queue ids) and what 1,000 of them add to
// used_memory, and holds them to the figures docs/redis.md states.
func TestRedisCost(t *testing.T) {
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
	saved := make([]history.Entry, storms)
	for i := range ths {
		ths[i] = historytest.NewThread()
		saved[i] = realisticStorm(ths[i], now.Add(time.Duration(i)*time.Millisecond))
	}
	before := used()
	for _, e := range saved {
		if err := s.Save(ctx, e, 90*24*time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	entries := used() - before
	for _, e := range saved {
		if err := s.AddQueued(ctx, e.Thread, e.Queued, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	queues := used() - before - entries
	entry, queue := usage(k.HistoryEntry(ths[0])), usage(k.Queued(ths[0]))
	t.Logf("one storm (80 senders, 81 queue ids, 60-char subject, 2 lists): entry %d B, queue id list %d B (MEMORY USAGE)", entry, queue)
	t.Logf("%d storms: used_memory grew by %d B for the entries and index (%d B per storm, kept report.history), then %d B for the queue id lists (%d B per storm, kept store.retention)",
		storms, entries, entries/storms, queues, queues/storms)
	// The bounds docs/redis.md states: under 20 KiB a storm's entry with
	// its index member, under 16 KiB its queue id list.
	if entry > 20<<10 || entries/storms > 20<<10 || queues/storms > 16<<10 {
		t.Errorf("a storm costs more than docs/redis.md says: entry %d B, %d B per storm in history, %d B of queue ids", entry, entries/storms, queues/storms)
	}
}

// BenchmarkList: List(since, 1000) over 1,000 realistic storms.
func BenchmarkList(b *testing.B) {
	addr := redisenv.Start(b)
	for name, s := range map[string]history.Store{"memory": history.NewMemory(0), "redis": openRedis(b, addr, false)} {
		b.Run(name, func(b *testing.B) {
			ctx, now := historyCtx(b), time.Now()
			for i := range 1000 {
				if err := s.Save(ctx, realisticStorm(historytest.NewThread(), now.Add(time.Duration(i)*time.Millisecond)), time.Hour, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				got, err := s.List(ctx, now.Add(-time.Minute), 1000)
				if err != nil || len(got) != 1000 {
					b.Fatalf("List: %d entries, %v", len(got), err)
				}
			}
		})
	}
}

// TestRedisOversized: an entry written past the bounds by someone
// else (redis-cli, another program) is read back within them.
func TestRedisOversized(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	ctx, k, now := historyCtx(t), s.Keys(), time.Now()
	long := strings.Repeat("x", history.TextMax+100)
	for _, tc := range []struct {
		name, summary, detail string
	}{
		{"long text in place", fmt.Sprintf(`{"subject":%q,"lists":[%q],"last_seen":%d}`, long, long, now.UnixMilli()),
			fmt.Sprintf(`{"senders":{"a@example.org":%q},"queued":[{"sender":%q}]}`, long, long)},
		{"long sender key", fmt.Sprintf(`{"last_seen":%d}`, now.UnixMilli()), fmt.Sprintf(`{"senders":{%q:"counted"}}`, long)},
	} {
		th := historytest.NewThread()
		redisenv.CLI(t, addr, "HSET", k.HistoryEntry(th), "summary", tc.summary, "detail", tc.detail)
		e, err := s.Get(ctx, th)
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
			if n := len([]rune(x)); n > history.TextMax {
				t.Errorf("%s: a text of %d runes came back, want at most %d", tc.name, n, history.TextMax)
			}
		}
	}
}
