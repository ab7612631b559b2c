package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// startReplicated starts a master and one replica of it that applies its
// writes.
func startReplicated(t *testing.T) (master, replica *redisenv.Server) {
	t.Helper()
	master = redisenv.StartServer(t, "--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(master.Addr)
	replica = redisenv.StartServer(t, "--replicaof", "127.0.0.1", port)
	redisenv.WaitStreaming(t, master.Addr, replica.Addr)
	return master, replica
}

// TestRedisWaitReplicas: with WaitReplicas a record returns once the
// replica has it, and a record the replica cannot take in time (it is
// frozen) fails with a NotReplicatedError carrying the master's tally,
// after WaitTimeout. A WAIT sent on any other connection than the
// record's would find nothing to wait for and pass.
func TestRedisWaitReplicas(t *testing.T) {
	master, replica := startReplicated(t)
	const wait = 50 * time.Millisecond
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{master.Addr}, Timeout: time.Second,
		WaitReplicas: 1, WaitTimeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	th := storetest.NewThread()
	meta := "stormguard:{" + string(th) + "}:meta"

	if tally, err := s.Record(ctx, replyTo(th, defaultLimits)); err != nil || tally.Count != 1 {
		t.Fatalf("Record with the replica up: %+v, %v; want counted, no error", tally, err)
	}
	if got := redisenv.CLI(t, replica.Addr, "HGET", meta, "accepted"); got != "1" {
		t.Errorf("replica's accepted count as Record returned = %q, want 1", got)
	}

	replica.Stop(t)
	r := replyTo(th, defaultLimits)
	start := time.Now()
	tally, err := s.Record(ctx, r)
	took := time.Since(start)
	var nr *store.NotReplicatedError
	switch {
	case !errors.As(err, &nr):
		t.Fatalf("Record with the replica frozen: %+v, %v; want a NotReplicatedError", tally, err)
	case nr.Tally.Status != policy.StatusCounted || nr.Tally.Count != 2 || nr.Tally.Thread != th:
		t.Errorf("NotReplicatedError.Tally = %+v, want the master's: counted, count 2, thread %s", nr.Tally, th)
	case nr.Acked != 0 || nr.Want != 1:
		t.Errorf("NotReplicatedError acked %d of %d, want 0 of 1", nr.Acked, nr.Want)
	case took < wait:
		t.Errorf("Record failed after %v, before the WAIT's %v", took, wait)
	}
	if got := redisenv.CLI(t, master.Addr, "HGET", meta, "accepted"); got != "2" {
		t.Errorf("master's accepted count = %q, want 2 (the record stands)", got)
	}
	t.Logf("a record the frozen replica did not acknowledge failed after %v (WAIT %v): %v", took.Round(time.Millisecond), wait, err)

	// Thawed: the same message again is known, counted once, and confirmed.
	replica.Cont(t)
	r.Now = time.Now()
	testenv.WaitFor(t, 10*time.Second, "the retry confirmed", func() (bool, string) {
		tally, err = s.Record(ctx, r)
		return err == nil, ""
	})
	if tally.Status != policy.StatusDuplicate || tally.Count != 2 {
		t.Errorf("retry after the thaw: %+v, want a duplicate at count 2", tally)
	}
}

// TestRedisWaitNoReplica: with WaitReplicas and no replica at all, every
// record fails after WaitTimeout (the store behaves as out of reach,
// store.on_error applies), and still counts on the master.
func TestRedisWaitNoReplica(t *testing.T) {
	addr := redisenv.Start(t)
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, WaitReplicas: 1, WaitTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	th := storetest.NewThread()
	_, err = s.Record(context.Background(), replyTo(th, defaultLimits))
	var nr *store.NotReplicatedError
	if !errors.As(err, &nr) || nr.Tally.Count != 1 {
		t.Fatalf("Record with no replica: %v; want a NotReplicatedError with count 1", err)
	}
}

// TestRedisWaiting runs the store suite on a master and its replica with
// every record waiting for the replica: the answers are the same.
func TestRedisWaiting(t *testing.T) {
	master, _ := startReplicated(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		prefix := fmt.Sprintf("sgtest%d:", prefixSeq.Add(1))
		s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{master.Addr}, Prefix: prefix,
			Timeout: 5 * time.Second, WaitReplicas: 1, WaitTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return redisHarness{Redis: s, addr: master.Addr, prefix: prefix}
	})
}

// TestRedisWaitNoScript: a record that finds its script gone from the
// cache (SCRIPT FLUSH) loads it, counts once and still waits.
func TestRedisWaitNoScript(t *testing.T) {
	master, replica := startReplicated(t)
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{master.Addr}, Timeout: time.Second,
		WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	th := storetest.NewThread()
	redisenv.CLI(t, master.Addr, "SCRIPT", "FLUSH")
	if tally, err := s.Record(context.Background(), replyTo(th, defaultLimits)); err != nil || tally.Count != 1 {
		t.Fatalf("Record after SCRIPT FLUSH: %+v, %v; want counted once", tally, err)
	}
	redisenv.CLI(t, master.Addr, "SCRIPT", "FLUSH")
	replica.Stop(t)
	defer replica.Cont(t)
	var nr *store.NotReplicatedError
	if _, err := s.Record(context.Background(), replyTo(th, defaultLimits)); !errors.As(err, &nr) || nr.Tally.Count != 2 {
		t.Fatalf("Record after SCRIPT FLUSH, replica frozen: %v; want a NotReplicatedError at count 2", err)
	}
}

// BenchmarkRedisRecordWait: what waiting for a replica costs a record, on
// one master and its replica: one record at a time (the latency a message
// sees, with its 99th percentile) and many at once (throughput).
func BenchmarkRedisRecordWait(b *testing.B) {
	master := redisenv.StartServer(b, "--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(master.Addr)
	replica := redisenv.StartServer(b, "--replicaof", "127.0.0.1", port)
	redisenv.WaitStreaming(b, master.Addr, replica.Addr)
	for _, replicas := range []int{0, 1} {
		s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{master.Addr}, Timeout: time.Second,
			WaitReplicas: replicas, WaitTimeout: 500 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.Run(fmt.Sprintf("serial/wait=%d", replicas), func(b *testing.B) {
			th := storetest.NewThread()
			took := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, err := s.Record(context.Background(), replyTo(th, policy.Limits{Window: time.Hour, BlockFor: time.Hour})); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
		b.Run(fmt.Sprintf("parallel/wait=%d", replicas), func(b *testing.B) { storetest.BenchRecord(b, s) })
	}
}

// TestRedisClusterWaitReplicas: on a Cluster, a record's WAIT goes to the
// master of the thread's slot, on the script's connection: with that
// master's replica frozen the record fails with the master's tally,
// while a thread in another master's slots is confirmed as usual.
func TestRedisClusterWaitReplicas(t *testing.T) {
	c := redisenv.StartClusterReplicas(t, 3)
	s, err := store.OpenRedis(store.RedisConfig{Addrs: c.Seeds()[:1], Cluster: true, Timeout: time.Second,
		WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	th := storetest.NewThread()
	if tally, err := s.Record(ctx, replyTo(th, defaultLimits)); err != nil || tally.Count != 1 {
		t.Fatalf("Record, replicas up: %+v, %v", tally, err)
	}
	master := c.MasterOf(t, s.Keys().Meta(th))
	other := storetest.NewThread()
	for c.MasterOf(t, s.Keys().Meta(other)) == master {
		other = storetest.NewThread()
	}
	replica := c.ReplicaOf(t, master)
	replica.Stop(t)
	defer replica.Cont(t)

	var nr *store.NotReplicatedError
	if _, err := s.Record(ctx, replyTo(th, defaultLimits)); !errors.As(err, &nr) || nr.Tally.Count != 2 || nr.Acked != 0 {
		t.Errorf("Record, the slot master's replica frozen: %v; want a NotReplicatedError, count 2, 0 acknowledged", err)
	}
	if tally, err := s.Record(ctx, replyTo(other, defaultLimits)); err != nil || tally.Count != 1 {
		t.Errorf("Record in another master's slot: %+v, %v; want confirmed", tally, err)
	}
}
