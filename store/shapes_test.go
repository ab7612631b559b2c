package store_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// The conformance suite on the other shapes a site's Redis takes:
// Sentinel, TLS with a client certificate, and the restricted ACL user
// (standalone and Cluster). Each store is opened by store.OpenRedis from a
// RedisConfig, as the daemon opens it.

// shapeHarness is a store opened from cfg, with a raw client of the same
// shape to write override values verbatim (storetest.RawOverrider).
type shapeHarness struct {
	*store.Redis
	raw redis.UniversalClient
}

func (h shapeHarness) SetRawOverride(t *testing.T, th policy.ThreadID, v string) {
	t.Helper()
	if err := h.raw.Set(context.Background(), h.Keys().Override(th), v, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// openShape opens a store from cfg with a fresh prefix under base
// ("stormguard:" for the ACL user, whose keys must match ~stormguard:*).
func openShape(t *testing.T, cfg store.RedisConfig, base string) shapeHarness {
	t.Helper()
	cfg.Prefix = fmt.Sprintf("%st%d:", base, prefixSeq.Add(1))
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second // generous: -race on a small machine
	}
	s, err := store.OpenRedis(cfg)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	raw := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: slices.Clone(cfg.Addrs), MasterName: cfg.MasterName, IsClusterMode: cfg.Cluster,
		Username: cfg.Username, Password: cfg.Password, TLSConfig: cfg.TLS, DisableIdentity: true,
	})
	t.Cleanup(func() { raw.Close() })
	return shapeHarness{Redis: s, raw: raw}
}

func runShape(t *testing.T, cfg store.RedisConfig, base string) {
	t.Helper()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openShape(t, cfg, base)
	})
}

// recordOnce records one reply through a store opened from cfg.
func recordOnce(cfg store.RedisConfig) error {
	s, err := store.OpenRedis(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = s.Record(ctx, replyTo(storetest.NewThread(), defaultLimits))
	return err
}

func TestRedisSentinel(t *testing.T) {
	g := redisenv.StartSentinel(t, 1)
	cfg := store.RedisConfig{Addrs: g.SentinelAddrs(), MasterName: g.Name}
	runShape(t, cfg, "sgtest")
	t.Run("WritesReachTheMaster", func(t *testing.T) {
		cfg := cfg
		cfg.Prefix = "sentinelcheck:"
		if err := recordOnce(cfg); err != nil {
			t.Fatal(err)
		}
		if got := redisenv.CLI(t, g.Master.Addr, "KEYS", "sentinelcheck:*"); got == "" {
			t.Error("no key on the master the sentinels name")
		}
	})
}

func TestRedisTLS(t *testing.T) {
	r := redisenv.StartTLS(t)
	cfg := store.RedisConfig{Addrs: []string{r.Addr}, TLS: r.Files.ClientConfig(t, true)}
	runShape(t, cfg, "sgtest")
	t.Run("Refused", func(t *testing.T) {
		other := testenv.MakeTLSFiles(t, t.TempDir()) // a CA the server does not know
		for name, tc := range map[string]*tls.Config{
			"no client certificate": r.Files.ClientConfig(t, false),
			"unknown server CA":     other.ClientConfig(t, true),
			"plain text":            nil,
		} {
			err := recordOnce(store.RedisConfig{Addrs: []string{r.Addr}, TLS: tc, Timeout: time.Second})
			if err == nil {
				t.Errorf("%s: Record succeeded", name)
			}
		}
	})
	t.Run("ServerName", func(t *testing.T) {
		c := r.Files.ClientConfig(t, true)
		c.ServerName = "localhost" // redis.tls.server_name: in the certificate
		if err := recordOnce(store.RedisConfig{Addrs: []string{r.Addr}, TLS: c}); err != nil {
			t.Errorf("server_name localhost: %v", err)
		}
		c = r.Files.ClientConfig(t, true)
		c.ServerName = "redis.example.org" // not in the certificate
		if err := recordOnce(store.RedisConfig{Addrs: []string{r.Addr}, TLS: c, Timeout: time.Second}); err == nil {
			t.Error("server_name not in the certificate: Record succeeded")
		}
	})
}

func TestRedisACL(t *testing.T) {
	acl := store.RedisConfig{Username: redisenv.ACLUser, Password: redisenv.ACLPassword}
	t.Run("standalone", func(t *testing.T) {
		addr := redisenv.Start(t)
		redisenv.AddACLUser(t, addr)
		cfg := acl
		cfg.Addrs = []string{addr}
		runShape(t, cfg, "stormguard:")
		t.Run("Confined", func(t *testing.T) { testConfined(t, addr, cfg) })
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

// testConfined proves the ACL user can do nothing but stormguard's work:
// no other key, no destructive or admin command, no other channel.
func testConfined(t *testing.T, addr string, cfg store.RedisConfig) {
	redisenv.CLI(t, addr, "SET", "other:secret", "x")
	c := redis.NewClient(&redis.Options{Addr: addr, Username: cfg.Username, Password: cfg.Password, DisableIdentity: true})
	defer c.Close()
	ctx := context.Background()
	for name, err := range map[string]error{
		"GET other:secret":          c.Get(ctx, "other:secret").Err(),
		"SET other:x":               c.Set(ctx, "other:x", "1", 0).Err(),
		"FLUSHALL":                  c.FlushAll(ctx).Err(),
		"FLUSHDB":                   c.FlushDB(ctx).Err(),
		"KEYS":                      c.Keys(ctx, "*").Err(),
		"CONFIG SET":                c.ConfigSet(ctx, "dir", "/tmp").Err(),
		"SCRIPT FLUSH":              c.ScriptFlush(ctx).Err(),
		"EVAL on another key":       c.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"other:secret"}).Err(),
		"EVAL reaching another key": c.Eval(ctx, "return redis.call('GET', 'other:secret')", []string{"stormguard:x"}).Err(),
		"PUBLISH other":             c.Publish(ctx, "other", "x").Err(),
		"SHUTDOWN":                  c.Shutdown(ctx).Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "can't access") {
			t.Errorf("%s as %s: %v, want NOPERM", name, cfg.Username, err)
		}
	}
	if got := redisenv.CLI(t, addr, "GET", "other:secret"); got != "x" {
		t.Errorf("other:secret = %q after the attempts", got)
	}
	if err := c.Publish(ctx, "stormguard:events", "{}").Err(); err != nil {
		t.Errorf("PUBLISH stormguard:events: %v", err)
	}
}
