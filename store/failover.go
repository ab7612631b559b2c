package store

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// followFailover has a Cluster client reload its slot map whenever a call
// fails without an answer from Redis (a node unreachable or silent). The
// client otherwise learns that a slot moved only from a MOVED reply,
// which a dead master never sends, or from its reload every 60s: after a
// failover it would go on calling the dead master until then. Reloads are
// coalesced by the client (one at a time, 200ms apart at most).
type followFailover struct{ c *redis.ClusterClient }

func (h followFailover) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h followFailover) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h followFailover) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

func (h followFailover) check(err error) {
	var reply redis.Error // an error reply (or nil): the node answered
	if err != nil && !errors.As(err, &reply) {
		h.c.ReloadState(context.Background())
	}
}
