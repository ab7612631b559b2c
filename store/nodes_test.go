package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/store"
)

// TestHeartbeat: each node's heartbeat counts the nodes whose heartbeat
// holds, on a standalone Redis and a Cluster; a node whose heartbeat ran
// out is no longer counted, and the key expires with the last one.
func TestHeartbeat(t *testing.T) {
	for name, h := range map[string]func(t *testing.T) redisHarness{
		"standalone": func(t *testing.T) redisHarness { return openRedis(t, redisenv.Start(t), false) },
		"cluster":    func(t *testing.T) redisHarness { return openRedis(t, redisenv.StartCluster(t)[0], true) },
	} {
		t.Run(name, func(t *testing.T) {
			s := h(t)
			ctx := context.Background()
			for i, c := range []struct {
				node string
				ttl  time.Duration
				want int
			}{{"mx1", time.Hour, 1}, {"mx2", time.Hour, 2}, {"mx1", time.Hour, 2}, {"mx3", time.Millisecond, 3}} {
				if n, err := s.Heartbeat(ctx, c.node, c.ttl); err != nil || n != c.want {
					t.Fatalf("heartbeat %d of %s: %d, %v; want %d nodes", i, c.node, n, err, c.want)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for n := 3; n != 2; {
				if time.Now().After(deadline) {
					t.Fatalf("mx3's heartbeat of 1ms still counted: %d nodes", n)
				}
				var err error
				if n, err = s.Heartbeat(ctx, "mx1", time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Heartbeat(ctx, "", time.Hour); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("heartbeat of an unnamed node: %v, want ErrInvalid", err)
			}
		})
	}
}
