package store

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// Counting blocked threads for the daemon's gauge without a scan: each
// store keeps an index of the blocked threads, thread -> until when (ms),
// written as blocks are set (a storm's crossing, an operator's override
// or reset), and counts the entries not yet run out.
//
// A thread counts while a storm's block or an operator's block override
// holds it and no allow override lets it through. On Redis a block key
// deleted by hand (redis-cli DEL) is counted until it would have run out.

// BlockCounter counts the threads blocked at now, at most MaxBlockedCount.
type BlockCounter interface {
	Blocked(ctx context.Context, now time.Time) (int, error)
}

// MaxBlockedCount bounds what Blocked counts (and reads, on Redis).
const MaxBlockedCount = 10_000

var (
	_ BlockCounter = (*Memory)(nil)
	_ BlockCounter = (*Redis)(nil)
)

const noExpiry = math.MaxInt64 // an until that never comes

// blockedUntil is until when th is blocked as the gauge counts it (ms),
// 0 if it is not.
func (th *memThread) blockedUntil() int64 {
	switch th.override {
	case string(policy.OverrideAllow):
		return 0
	case string(policy.OverrideBlock):
		if th.overrideUntil == 0 {
			return noExpiry
		}
		return max(th.overrideUntil, th.blockUntil)
	}
	return th.blockUntil
}

// noteBlock updates th's entry in the memory store's blocked index. The
// caller holds m.mu.
func (m *Memory) noteBlock(th *memThread) {
	until := th.blockedUntil()
	if until == m.blocked[th.id] {
		return
	}
	if until == 0 {
		delete(m.blocked, th.id)
		return
	}
	m.blocked[th.id] = until
	heap.Push(&m.blockedBy, blockedEntry{th.id, until})
	if len(m.blockedBy) > 2*len(m.blocked)+64 { // entries superseded since: rebuild
		m.blockedBy = m.blockedBy[:0]
		for t, u := range m.blocked {
			m.blockedBy = append(m.blockedBy, blockedEntry{t, u})
		}
		heap.Init(&m.blockedBy)
	}
}

// Blocked implements BlockCounter: the blocked index, after dropping the
// entries that ran out by now.
func (m *Memory) Blocked(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: count blocked: %w", err)
	}
	ms := now.UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.blockedBy) > 0 && m.blockedBy[0].until <= ms {
		e := heap.Pop(&m.blockedBy).(blockedEntry)
		if m.blocked[e.t] == e.until {
			delete(m.blocked, e.t)
		}
	}
	return min(len(m.blocked), MaxBlockedCount), nil
}

type blockedEntry struct {
	t     policy.ThreadID
	until int64
}

// blockedHeap orders the blocked index by until, soonest first; an entry
// whose until the index no longer holds is superseded.
type blockedHeap []blockedEntry

func (h blockedHeap) Len() int           { return len(h) }
func (h blockedHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h blockedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *blockedHeap) Push(x any)        { *h = append(*h, x.(blockedEntry)) }
func (h *blockedHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// queueBlocked queues on pipe the blocked index's entry for t: until
// (ms; noExpiry: none; 0: not blocked, an entry run out that the next
// count trims, as the documented ACL has no ZREM).
func (s *Redis) queueBlocked(ctx context.Context, pipe redis.Pipeliner, t policy.ThreadID, until int64) {
	key := s.keys.Blocked()
	switch until {
	case noExpiry:
		pipe.ZAdd(ctx, key, redis.Z{Score: math.Inf(1), Member: string(t)})
	default:
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(until), Member: string(t)})
	}
}

// Blocked implements BlockCounter: the entries of the blocked index not
// run out by now, read up to MaxBlockedCount (ZRANGE BYSCORE LIMIT: no
// command beyond the documented ACL), after trimming those that have.
func (s *Redis) Blocked(ctx context.Context, now time.Time) (int, error) {
	key, ms := s.keys.Blocked(), strconv.FormatInt(now.UnixMilli(), 10)
	pipe := s.client.Pipeline()
	pipe.ZRemRangeByScore(ctx, key, "-inf", ms)
	ids := pipe.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: "(" + ms, Stop: "+inf", ByScore: true, Count: MaxBlockedCount})
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("store: count blocked: %w", err)
	}
	return len(ids.Val()), nil
}
