package sim

// The scenarios' stores: a fresh memory store each, or the configured
// Redis under a new private prefix each, deleted at the end of the run.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/store"
)

// cleanupTimeout bounds the deletion of the private prefixes.
const cleanupTimeout = 10 * time.Second

// stores hands out one fresh store per scenario, all of one backend.
type stores struct {
	rc        store.RedisConfig
	retention time.Duration         // store.retention: how long a key left behind lives
	client    redis.UniversalClient // nil: the memory store
	prefixes  []string              // the private prefixes handed out
}

func newStores(ctx context.Context, c Config) (*stores, error) {
	s := &stores{retention: c.Filter.Retention}
	if c.Redis == nil {
		return s, nil
	}
	s.rc = *c.Redis
	s.rc.Timeout = max(s.rc.Timeout, storeTimeout) // the daemon's client, with the longer deadline
	client, err := store.NewRedisClient(s.rc)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, s.rc.Timeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("sim: cannot reach Redis at %s: %s", strings.Join(s.rc.Addrs, ","), text.OneLine(err))
	}
	s.client = client
	return s, nil
}

// fresh returns an empty store with the storm's list registered: a new
// memory store, or Redis under a new private prefix (the configured prefix
// + "sim:" + 16 random hex digits + ":"), so the site's own storm state,
// lists and mode are never read or touched.
func (s *stores) fresh(ctx context.Context, audience int) (store.Store, error) {
	var st interface {
		store.Store
		store.Admin
	}
	if s.client == nil {
		st = store.NewMemory()
	} else {
		var b [8]byte
		_, _ = rand.Read(b[:])
		prefix := store.NewKeys(s.rc.Prefix).Prefix() + "sim:" + hex.EncodeToString(b[:]) + ":"
		s.prefixes = append(s.prefixes, prefix)
		st = store.NewRedis(s.client, prefix) // not closed: the client is shared, closed by close
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := st.SetList(ctx, list, audience); err != nil {
		return nil, fmt.Errorf("register the list: %s", text.OneLine(err))
	}
	return st, nil
}

// close deletes every key under the private prefixes and says what it did.
func (s *stores) close(ctx context.Context) (cleanup string, prefixes []string) {
	if s.client == nil {
		return "", nil
	}
	defer s.client.Close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	deleted := 0
	var scanErr error
	for _, p := range s.prefixes {
		n, err := dropKeys(ctx, s.client, p)
		deleted += n
		if err == nil {
			continue
		}
		scanErr = err
		for _, k := range store.NewKeys(p).Unexpiring() { // no SCAN: at least the keys without a TTL
			if m, err := s.client.Del(ctx, k).Result(); err == nil {
				deleted += int(m)
			}
		}
	}
	if scanErr != nil {
		return fmt.Sprintf("deleted %d keys, but could not SCAN for the others (%s): they expire by themselves within %s (store.retention)",
			deleted, text.OneLine(scanErr), s.retention), s.prefixes
	}
	return fmt.Sprintf("deleted the %d keys the simulation wrote", deleted), s.prefixes
}

// dropKeys deletes the keys under prefix: SCAN on every master, then DEL
// one key at a time (in a Cluster they live in different slots).
func dropKeys(ctx context.Context, c redis.UniversalClient, prefix string) (int, error) {
	pattern := store.NewKeys(prefix).Pattern()
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, n redis.Cmdable) error {
		it := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(ctx, c)
	}
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Del(ctx, k)
	}
	_, err = pipe.Exec(ctx)
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, err
}
