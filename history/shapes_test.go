package history_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/history/historytest"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/store"
)

// The conformance suite on the other shapes a site's Redis takes, as the
// store's (store/shapes_test.go): Sentinel, TLS with a client
// certificate, and the restricted ACL user (standalone and Cluster). Each
// history is on a client made by store.NewRedisClient from a RedisConfig,
// as the daemon's store is.

// runShape runs the suite on histories opened from cfg, each under a fresh
// prefix below base ("stormguard:" for the ACL user, whose keys must match
// ~stormguard:*).
func runShape(t *testing.T, cfg store.RedisConfig, base string) {
	t.Helper()
	historytest.Run(t, func(t *testing.T) history.Store {
		c := cfg
		c.Prefix = fmt.Sprintf("%st%d:", base, prefixSeq.Add(1))
		c.Timeout = 5 * time.Second // generous: -race on a small machine
		client, err := store.NewRedisClient(c)
		if err != nil {
			t.Fatalf("NewRedisClient: %v", err)
		}
		t.Cleanup(func() { client.Close() })
		return history.NewRedis(client, store.NewKeys(c.Prefix))
	})
}

func TestRedisSentinel(t *testing.T) {
	g := redisenv.StartSentinel(t, 1)
	runShape(t, store.RedisConfig{Addrs: g.SentinelAddrs(), MasterName: g.Name}, "sgtest")
}

func TestRedisTLS(t *testing.T) {
	r := redisenv.StartTLS(t)
	runShape(t, store.RedisConfig{Addrs: []string{r.Addr}, TLS: r.Files.ClientConfig(t, true)}, "sgtest")
}

func TestRedisACL(t *testing.T) {
	acl := store.RedisConfig{Username: redisenv.ACLUser, Password: redisenv.ACLPassword}
	t.Run("standalone", func(t *testing.T) {
		addr := redisenv.Start(t)
		redisenv.AddACLUser(t, addr)
		cfg := acl
		cfg.Addrs = []string{addr}
		runShape(t, cfg, "stormguard:")
	})
	t.Run("cluster", func(t *testing.T) {
		addrs := redisenv.StartCluster(t)
		for _, a := range addrs {
			redisenv.AddACLUser(t, a)
		}
		cfg := acl
		cfg.Addrs, cfg.Cluster = addrs[:1], true
		runShape(t, cfg, "stormguard:")
	})
}
