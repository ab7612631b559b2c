package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestClaimNotice: of two nodes claiming one thread's notice, one gets it;
// after the TTL it can be claimed again; other threads are not affected.
// On a standalone Redis and on a three-master Cluster.
func TestClaimNotice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster bool
		addr    func(t *testing.T) string
	}{
		{"standalone", false, func(t *testing.T) string { return redisenv.Start(t) }},
		{"cluster", true, func(t *testing.T) string { return redisenv.StartClusterOf(t, 3)[0] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			a := openRedis(t, addr, tc.cluster)
			b, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Cluster: tc.cluster, Prefix: a.prefix, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx := context.Background()
			const ttl = 300 * time.Millisecond
			th := policy.ThreadID("3f9a0c1d2b4e5f60")
			if ok, err := a.ClaimNotice(ctx, th, "mx1", ttl); !ok || err != nil {
				t.Fatalf("first claim: %v %v, want true", ok, err)
			}
			if ok, err := b.ClaimNotice(ctx, th, "mx2", ttl); ok || err != nil {
				t.Fatalf("second node's claim: %v %v, want false", ok, err)
			}
			if ok, err := b.ClaimNotice(ctx, "0000000000000001", "mx2", ttl); !ok || err != nil {
				t.Fatalf("another thread: %v %v, want true", ok, err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				ok, err := b.ClaimNotice(ctx, th, "mx2", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("claim never expired")
				}
				time.Sleep(50 * time.Millisecond) // polling Redis's expiry
			}
		})
	}
}
