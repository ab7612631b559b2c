package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// Listing threads for operators (stormguard storms, the admin API). No
// listing may hold the decision path: every listing is bounded by
// MaxListLimit, the limit applies before any walk, and a listing carries no
// senders (Thread has them). The memory store copies what it lists under
// its mutex (a walk of at most limit threads from the heads of its
// last-seen lists) and builds the answer after.
//
// The Redis store keeps two indexes outside record.lua, since each is a
// key of its own and a Cluster slot of its own (store/keys.go):
//
//   - stormguard:threads:{0..15}: thread id -> last seen (ms), written in
//     the same pipeline as record.lua (Record stays one round trip) into
//     the shard ThreadShard names, and trimmed to the retention on each
//     write. Sharded so that on a Cluster no one master takes every
//     node's writes; a listing merges the shards.
//   - stormguard:storms: thread id -> until when it is of interest (ms),
//     written when a thread crosses a limit and when an operator
//     overrides it, so that Storms finds them however many quiet threads
//     there are, and reads no more than its limit of them.
//
// Entries whose thread has expired since are skipped when read.

// DefaultListLimit is how many threads a listing returns when limit <= 0.
const DefaultListLimit = 100

// MaxListLimit bounds every listing: a larger limit is cut to it.
const MaxListLimit = 1000

// listLimit is limit as a listing applies it.
func listLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return min(limit, MaxListLimit)
}

// Lister lists the threads a store knows, most recently seen first.
type Lister interface {
	// Threads returns up to limit threads (DefaultListLimit when limit <= 0,
	// at most MaxListLimit) that have been seen within the retention, most
	// recently seen first, each as Thread would report it at now but
	// without its senders.
	Threads(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error)
	// Storms returns, like Threads, the threads that crossed a limit
	// within the retention, are blocked, or carry an operator's override,
	// however many quiet threads were seen since.
	Storms(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error)
}

var (
	_ Lister = (*Memory)(nil)
	_ Lister = (*Redis)(nil)
)

// IsStorm reports whether a listed thread is one Storms lists.
func (t ThreadInfo) IsStorm() bool {
	return !t.StormAt.IsZero() || t.Blocked || t.Override != policy.OverrideNone
}

// byLastSeen orders threads most recently seen first.
func byLastSeen(a, b ThreadInfo) int {
	return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.Thread, b.Thread))
}

// EventsChannel is the pub/sub channel events are published on.
func (s *Redis) EventsChannel() string { return s.keys.Events() }

// indexThread queues the index update for one record on pipe: its shard
// of the thread index.
func (s *Redis) indexThread(ctx context.Context, pipe redis.Pipeliner, r Record) {
	now := r.Now.UnixMilli()
	key := s.keys.Threads(ThreadShard(r.Thread))
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(now), Member: string(r.Thread)})
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now-r.Retention.Milliseconds(), 10))
}

// indexStorm adds t to the storms index until the time until (ms; 0: no
// expiry), and trims what has run out; and sets its entry in the blocked
// index to blocked (ms, as queueBlocked takes it). Record calls it when a
// thread crosses a limit, SetOverride when an operator overrides one.
func (s *Redis) indexStorm(ctx context.Context, t policy.ThreadID, now time.Time, until, blocked int64) error {
	score := math.Inf(1)
	if until > 0 {
		score = float64(until)
	}
	pipe := s.client.Pipeline()
	s.queueBlocked(ctx, pipe, t, blocked)
	pipe.ZAddGT(ctx, s.keys.Storms(), redis.Z{Score: score, Member: string(t)})
	pipe.ZRemRangeByScore(ctx, s.keys.Storms(), "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%s: %w", s.keys.Storms(), err)
	}
	return nil
}

// recordStorm is Record's last step: a thread that crossed a limit goes
// into the storms index until its record expires. It is a second round
// trip, once per storm. A failure does not change the verdict (the thread
// is blocked in Redis, and Record must not report an error that would
// count the message again elsewhere): the thread is then missing from
// storms, though still in the thread index (storms --all).
func (s *Redis) recordStorm(ctx context.Context, r Record, tally policy.Tally) {
	if tally.Crossed == "" {
		return
	}
	until := r.Now.UnixMilli() + max(r.Retention, tally.BlockTTL).Milliseconds()
	_ = s.indexStorm(ctx, tally.Thread, r.Now, until, r.Now.UnixMilli()+tally.BlockTTL.Milliseconds())
}

// Threads implements Lister: the top limit of each shard of the index,
// merged, then one pipeline over the listed threads' keys.
func (s *Redis) Threads(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error) {
	limit = listLimit(limit)
	pipe := s.client.Pipeline()
	shards := make([]*redis.ZSliceCmd, ThreadShards)
	for i := range shards {
		shards[i] = pipe.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: s.keys.Threads(i), Start: 0, Stop: limit - 1, Rev: true,
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: list threads: %w", err)
	}
	var all []redis.Z
	for _, c := range shards {
		all = append(all, c.Val()...)
	}
	slices.SortFunc(all, func(a, b redis.Z) int { return cmp.Compare(b.Score, a.Score) })
	ids := make([]string, 0, min(limit, len(all)))
	for _, z := range all[:min(limit, len(all))] {
		if id, ok := z.Member.(string); ok {
			ids = append(ids, id)
		}
	}
	out, _, err := s.infos(ctx, ids, now)
	if err != nil {
		return nil, fmt.Errorf("store: list threads: %w", err)
	}
	return out, nil
}

// Storms implements Lister: the limit threads of the storms index that
// are of interest longest (the latest storms, and overrides without
// expiry first), read in one pipeline, most recently seen first; those
// found gone are taken out of the index.
func (s *Redis) Storms(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error) {
	limit = listLimit(limit)
	ids, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.keys.Storms(), Start: "+inf", Stop: "(" + strconv.FormatInt(now.UnixMilli(), 10),
		ByScore: true, Rev: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: list storms: %w", err)
	}
	infos, missing, err := s.infos(ctx, ids, now)
	if err != nil {
		return nil, fmt.Errorf("store: list storms: %w", err)
	}
	out := slices.DeleteFunc(infos, func(x ThreadInfo) bool { return !x.IsStorm() })
	if len(missing) > 0 {
		gone := make([]any, len(missing))
		for i, t := range missing {
			gone[i] = string(t)
		}
		_ = s.client.ZRem(ctx, s.keys.Storms(), gone...).Err() // tidying only: the next listing tries again
	}
	slices.SortFunc(out, byLastSeen)
	return out, nil
}

// infos reads the listed threads in one pipeline, in order; missing are
// those whose keys have all expired.
func (s *Redis) infos(ctx context.Context, ids []string, now time.Time) (out []ThreadInfo, missing []policy.ThreadID, err error) {
	pipe := s.client.Pipeline()
	var threads []policy.ThreadID
	var cmds []*threadCmds
	for _, id := range ids {
		if checkID("thread", id) != nil {
			continue // not ours
		}
		threads = append(threads, policy.ThreadID(id))
		cmds = append(cmds, s.queueThread(ctx, pipe, policy.ThreadID(id), false))
	}
	if len(cmds) == 0 {
		return nil, nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	out = make([]ThreadInfo, 0, len(cmds))
	for i, c := range cmds {
		info, err := c.info(threads[i], now)
		if errors.Is(err, ErrNotFound) {
			missing = append(missing, threads[i])
			continue // expired since it was indexed
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", threads[i], err)
		}
		out = append(out, info)
	}
	return out, missing, nil
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

// queueThread queues the reads of thread t's keys on pipe; its senders
// only when asked (a listing reads none of them).
func (s *Redis) queueThread(ctx context.Context, pipe redis.Pipeliner, t policy.ThreadID, senders bool) *threadCmds {
	k := s.keys
	c := &threadCmds{
		meta:        pipe.HGetAll(ctx, k.Meta(t)),
		replies:     pipe.ZRangeWithScores(ctx, k.Replies(t), 0, -1),
		blockTTL:    pipe.PTTL(ctx, k.Block(t)),
		override:    pipe.Get(ctx, k.Override(t)),
		overrideTTL: pipe.PTTL(ctx, k.Override(t)),
	}
	if senders {
		c.senders = pipe.HGetAll(ctx, k.Senders(t))
	}
	return c
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
	var sv map[string]string
	if c.senders != nil {
		if sv, err = c.senders.Result(); err != nil {
			return ThreadInfo{}, err
		}
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

// Threads implements Lister: under the mutex, a walk of the two lists by
// last seen from their heads, merged, copying at most limit threads; the
// answer is built after.
func (m *Memory) Threads(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list threads: %w", err)
	}
	limit = listLimit(limit)
	ms := now.UnixMilli()
	var got []copied
	m.mu.Lock()
	a, b := m.quiet.head, m.storm.head
	for (a != nil || b != nil) && len(got) < limit {
		th := a
		if a == nil || b != nil && b.meta.lastSeen > a.meta.lastSeen {
			th, b = b, b.next
		} else {
			a = a.next
		}
		if !th.meta.seen || th.metaUntil <= ms { // no message within the retention
			continue
		}
		if x, ok := m.info(th, ms, false); ok {
			got = append(got, copied{th.id, x})
		}
	}
	m.mu.Unlock()
	return built(got), nil
}

// Storms implements Lister: under the mutex, a walk of the storms list
// from its head, copying at most limit threads that are storms at now; the
// answer is built after.
func (m *Memory) Storms(ctx context.Context, now time.Time, limit int) ([]ThreadInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list storms: %w", err)
	}
	limit = listLimit(limit)
	ms := now.UnixMilli()
	var got []copied
	m.mu.Lock()
	for th := m.storm.head; th != nil && len(got) < limit; th = th.next {
		if x, ok := m.info(th, ms, false); ok && x.isStorm() {
			got = append(got, copied{th.id, x})
		}
	}
	m.mu.Unlock()
	return built(got), nil
}

// copied is one thread a listing copied under the mutex.
type copied struct {
	t    policy.ThreadID
	info threadInfo
}

// built is a listing's answer from what it copied, most recently seen
// first (placeSteps may have left a late record early).
func built(got []copied) []ThreadInfo {
	out := make([]ThreadInfo, len(got))
	for i, c := range got {
		out[i] = c.info.build(c.t)
	}
	slices.SortStableFunc(out, byLastSeen)
	return out
}
