package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxNodeName bounds a node's name in the heartbeat set.
const MaxNodeName = 255

// Heartbeat records that node uses the store now and for ttl, and returns
// how many nodes did within their ttl: the nodes sharing the store, which
// each count their share of a thread while the store is out of reach
// (policy.OutageLimits). One key, stormguard:nodes (a zset of node ->
// until when its heartbeat holds, in ms), trimmed and counted in one
// MULTI; it expires with the last node's heartbeat.
func (s *Redis) Heartbeat(ctx context.Context, node string, ttl time.Duration) (int, error) {
	if node == "" || len(node) > MaxNodeName || ttl <= 0 {
		return 0, fmt.Errorf("%w: heartbeat of node %q for %s", ErrInvalid, node, ttl)
	}
	now := time.Now()
	key := s.keys.Nodes()
	var card *redis.IntCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: node})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		card = p.ZCard(ctx, key)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	return int(card.Val()), nil
}
