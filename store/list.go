package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// Listing threads for operators (stormguard storms) and for the daemon's
// blocked-threads gauge.
//
// The Redis store keeps a global index, the zset stormguard:threads (thread
// id -> last seen, ms), written in the same pipeline as record.lua, so
// Record stays one round trip. The index is outside the script (it is a
// global key, in a Cluster slot of its own) and trimmed to the retention on
// every write; entries whose thread has expired since are skipped when read.

// DefaultListLimit is how many threads Threads returns when limit <= 0.
const DefaultListLimit = 100

// Lister lists the threads a store knows, most recently seen first.
type Lister interface {
	// Threads returns up to limit threads (DefaultListLimit when limit <= 0)
	// that have been seen within the retention, most recently seen first,
	// each as Thread would report it at now.
	Threads(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error)
}

var (
	_ Lister = (*Memory)(nil)
	_ Lister = (*Redis)(nil)
)

// EventsChannel is the pub/sub channel events are published on.
func (s *Redis) EventsChannel() string { return s.keys.Events() }

// indexThread queues the index update for one record on pipe.
func (s *Redis) indexThread(ctx context.Context, pipe redis.Pipeliner, r Record) {
	now := r.Now.UnixMilli()
	pipe.ZAdd(ctx, s.keys.Threads(), redis.Z{Score: float64(now), Member: string(r.Thread)})
	pipe.ZRemRangeByScore(ctx, s.keys.Threads(), "-inf", "("+strconv.FormatInt(now-r.Retention.Milliseconds(), 10))
}

// Threads implements Lister: one ZRANGE of the index, then one pipeline
// over the listed threads' keys.
func (s *Redis) Threads(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	ids, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.keys.Threads(), Start: 0, Stop: limit - 1, Rev: true,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: list threads: %w", err)
	}
	pipe := s.client.Pipeline()
	var threads []policy.ThreadID
	var cmds []*threadCmds
	for _, id := range ids {
		if checkID("thread", id) != nil {
			continue // not ours
		}
		threads = append(threads, policy.ThreadID(id))
		cmds = append(cmds, s.queueThread(ctx, pipe, policy.ThreadID(id)))
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: list threads: %w", err)
	}
	out := make([]ThreadInfo, 0, len(cmds))
	for i, c := range cmds {
		info, err := c.info(threads[i], now)
		if errors.Is(err, ErrNotFound) {
			continue // expired since it was indexed
		}
		if err != nil {
			return nil, fmt.Errorf("store: list threads: %s: %w", threads[i], err)
		}
		out = append(out, info)
	}
	return out, nil
}

// Ping checks that Redis answers.
func (s *Redis) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Publish publishes msg on EventsChannel.
func (s *Redis) Publish(ctx context.Context, msg string) error {
	if err := s.client.Publish(ctx, s.EventsChannel(), msg).Err(); err != nil {
		return fmt.Errorf("store: publish: %w", err)
	}
	return nil
}

// threadCmds are the queued reads of one thread's keys.
type threadCmds struct {
	meta        *redis.MapStringStringCmd
	replies     *redis.ZSliceCmd
	blockTTL    *redis.DurationCmd
	override    *redis.StringCmd
	overrideTTL *redis.DurationCmd
	senders     *redis.MapStringStringCmd
}

func (s *Redis) queueThread(ctx context.Context, pipe redis.Pipeliner, t policy.ThreadID) *threadCmds {
	k := s.keys
	return &threadCmds{
		meta:        pipe.HGetAll(ctx, k.Meta(t)),
		replies:     pipe.ZRangeWithScores(ctx, k.Replies(t), 0, -1),
		blockTTL:    pipe.PTTL(ctx, k.Block(t)),
		override:    pipe.Get(ctx, k.Override(t)),
		overrideTTL: pipe.PTTL(ctx, k.Override(t)),
		senders:     pipe.HGetAll(ctx, k.Senders(t)),
	}
}

// info reads the replies of queueThread's commands, checking each.
func (c *threadCmds) info(t policy.ThreadID, now time.Time) (ThreadInfo, error) {
	mv, err := c.meta.Result()
	if err != nil {
		return ThreadInfo{}, err
	}
	rv, err := c.replies.Result()
	if err != nil {
		return ThreadInfo{}, err
	}
	bttl, err := c.blockTTL.Result()
	if err != nil {
		return ThreadInfo{}, err
	}
	ov, err := c.override.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return ThreadInfo{}, err
	}
	ottl, err := c.overrideTTL.Result()
	if err != nil {
		return ThreadInfo{}, err
	}
	sv, err := c.senders.Result()
	if err != nil {
		return ThreadInfo{}, err
	}
	const none = time.Duration(-2) // PTTL of a key that does not exist
	if len(mv) == 0 && len(rv) == 0 && bttl == none && ottl == none && len(sv) == 0 {
		return ThreadInfo{}, ErrNotFound
	}

	num := func(f string) int64 {
		n, _ := strconv.ParseInt(mv[f], 10, 64) // absent or mistyped: 0
		return n
	}
	_, origSeen := mv["orig_at"]
	x := threadInfo{
		subject: mv["subject"], sender: mv["sender"],
		origSubject: mv["orig_subject"], origSender: mv["orig_sender"], origSeen: origSeen,
		firstSeen: num("first_seen"), lastSeen: num("last_seen"), stormAt: num("storm_at"),
		stormRule: mv["storm_rule"], audience: int(num("audience")),
		accepted: int(num("accepted")), refused: int(num("refused")), allowed: int(num("allowed")),
		blocked: bttl != none, blockTTL: bttl.Milliseconds(),
		override: ov, overrideTTL: ottl.Milliseconds(),
		senders: sv,
	}
	from := float64(now.UnixMilli() - num("window"))
	for _, z := range rv {
		if z.Score > from {
			x.inWindow++
		}
	}
	return x.build(t), nil
}

// Threads implements Lister.
func (m *Memory) Threads(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list threads: %w", err)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	m.mu.Lock()
	ids := make([]policy.ThreadID, 0, len(m.threads))
	for t, th := range m.threads {
		if th.meta.seen {
			ids = append(ids, t)
		}
	}
	last := func(t policy.ThreadID) int64 { return m.threads[t].meta.lastSeen }
	slices.SortFunc(ids, func(a, b policy.ThreadID) int {
		return cmp.Or(cmp.Compare(last(b), last(a)), cmp.Compare(a, b))
	})
	m.mu.Unlock()

	out := make([]ThreadInfo, 0, min(limit, len(ids)))
	for _, t := range ids {
		if len(out) == limit {
			break
		}
		info, err := m.Thread(ctx, t, now)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}
