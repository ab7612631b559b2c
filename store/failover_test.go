package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// TestRedisClusterFollowsFailover: a store on a Cluster whose master for
// a thread is SIGKILLed records in that thread again as soon as the
// replica is promoted (with WaitReplicas, once the old master is back as
// its replica): its client does not keep calling the dead master until
// its periodic reload (60s).
func TestRedisClusterFollowsFailover(t *testing.T) {
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprint("wait_replicas=", wait), func(t *testing.T) {
			c := redisenv.StartClusterReplicas(t, 3)
			s, err := store.OpenRedis(store.RedisConfig{Addrs: c.Seeds()[:1], Cluster: true, Timeout: 200 * time.Millisecond,
				WaitReplicas: wait})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			th := storetest.NewThread()
			if _, err := s.Record(ctx, replyTo(th, defaultLimits)); err != nil {
				t.Fatalf("Record before the failover: %v", err)
			}
			master := c.MasterOf(t, s.Keys().Meta(th))
			master.Kill(t)
			promoted := c.WaitPromoted(t, master, s.Keys().Meta(th), 30*time.Second)
			if wait > 0 { // a record waits for a replica: the old master, back
				master.Restart(t)
				c.WaitReplicaOf(t, promoted, master, 30*time.Second)
			}
			start := time.Now()
			var tally policy.Tally
			testenv.WaitFor(t, 5*time.Second, "a record on the promoted replica", func() (bool, string) {
				tally, err = s.Record(ctx, replyTo(th, defaultLimits))
				return err == nil, fmt.Sprint(err)
			})
			t.Logf("wait_replicas=%d: recording again %v after the promotion of %s%s", wait,
				time.Since(start).Round(time.Millisecond), promoted.Addr, map[bool]string{true: " and the old master's return as its replica"}[wait > 0])
			if tally.Count < 2 {
				t.Errorf("count on the promoted replica %d, want the replicated 1 and more", tally.Count)
			}
		})
	}
}
