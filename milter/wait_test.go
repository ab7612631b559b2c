package milter

import (
	"net"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestWaitReplicaFrozen: two nodes count on a master whose one replica
// stops taking writes mid-storm, with redis.wait_replicas 1 and
// store.on_error accept. Every record from then on is counted by the
// master but not confirmed, so each node falls back, counting on from
// the master's answer (its share of what the thread had left): the storm
// is held to max_replies in all, as the master counts every reply the
// nodes let through. Each decision takes two WAITs (the retry), well
// within store.budget.
func TestWaitReplicaFrozen(t *testing.T) {
	const maxReplies, before, during, wait = 10, 4, 30, 50 * time.Millisecond
	master := redisenv.StartServer(t, "--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(master.Addr)
	replica := redisenv.StartServer(t, "--replicaof", "127.0.0.1", port)
	redisenv.WaitStreaming(t, master.Addr, replica.Addr)

	cfg := outageConfig(OnErrorAccept)
	cfg.Policy.Limits.MaxReplies = maxReplies
	rc := store.RedisConfig{Addrs: []string{master.Addr}, Timeout: outageTimeout, WaitReplicas: 1, WaitTimeout: wait}
	ns := startNodes(t, 2, cfg, rc)

	root, mails := storm(before + during)
	for i, m := range mails[:before] {
		if o := deliver(ns[i%len(ns)].addr, m, 5*time.Second); o.err != nil || o.code != 250 {
			t.Fatalf("reply %d, replica taking writes: %d %v", i, o.code, o.err)
		}
	}
	if got := stats(ns).fallbacks; got != 0 {
		t.Fatalf("%d fallbacks with the replica taking writes", got)
	}

	replica.Stop(t)
	defer replica.Cont(t)
	accepted, worst := before, time.Duration(0)
	for i, m := range mails[before:] {
		o := deliver(ns[i%len(ns)].addr, m, 5*time.Second)
		if o.err != nil {
			t.Fatalf("reply %d, replica frozen: %v", before+i, o.err)
		}
		if o.code == 250 {
			accepted++
		}
		worst = max(worst, o.took)
	}
	s := stats(ns)
	th := policy.MessageIDKey(root).Thread()
	got := redisenv.CLI(t, master.Addr, "HGET", "stormguard:{"+string(th)+"}:meta", "accepted")
	switch {
	case accepted > maxReplies:
		t.Errorf("%d replies let through, more than max_replies %d", accepted, maxReplies)
	case s.fallbacks != during:
		t.Errorf("%d fallbacks, want one for each of the %d replies while the replica was frozen", s.fallbacks, during)
	case worst > outageBudget+outageMargin:
		t.Errorf("slowest decision %v, more than store.budget %v + %v", worst, outageBudget, outageMargin)
	}
	t.Logf("replica frozen after %d of %d replies: %d let through in all (max_replies %d), the master counted %s; %d retries, %d fallbacks; slowest decision %v (WAIT %v)",
		before, before+during, accepted, maxReplies, got, s.retries, s.fallbacks, worst.Round(time.Millisecond), wait)
}
