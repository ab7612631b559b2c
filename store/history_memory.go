package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// The memory store's history (store.History): in process, behind a mutex
// of its own so that the report page never waits on, or holds up, Record.
// Times are the store's clock (Memory.now), as Redis' TTLs are Redis'.
//
// Bounds: entries expire at LastSeen+keep and the index keeps at most the
// max SaveHistory is given; queue ids expire at retention after their
// thread's last AddQueued, at most MaxQueueRefs per thread, and at most
// queuedThreads threads have them (the one whose ids expire first leaves
// first).

// maxQueuedThreads bounds the threads the memory store keeps queue ids for
// (fewer if store.memory_max_threads is lower). Only large-audience
// threads have any: a site sees a handful a day, far below this.
const maxQueuedThreads = 10_000

var _ History = (*Memory)(nil)

type memHistory struct {
	mu      sync.Mutex
	entries map[policy.ThreadID]memEntry
	queued  map[policy.ThreadID]*memQueued
}

type memEntry struct {
	e     HistoryEntry // cleaned; never changed once stored (readers copy it)
	until int64        // ms
}

type memQueued struct {
	refs  []QueueRef
	until int64 // ms
}

// queuedThreads is the bound on threads with queue ids.
func (m *Memory) queuedThreads() int {
	if m.cfg.MaxThreads > 0 {
		return min(m.cfg.MaxThreads, maxQueuedThreads)
	}
	return maxQueuedThreads
}

// AddQueued implements History.
func (m *Memory) AddQueued(ctx context.Context, t policy.ThreadID, refs []QueueRef, retention time.Duration) error {
	err := checkQueued(t, retention)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: add queue ids of thread %s: %w", t, err)
	}
	if len(refs) == 0 {
		return nil
	}
	now := m.now().UnixMilli()
	h := &m.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.queued == nil {
		h.queued = make(map[policy.ThreadID]*memQueued)
	}
	q := h.queued[t]
	if q != nil && q.until <= now {
		q = nil
	}
	if q == nil {
		h.makeRoom(now, m.queuedThreads())
		q = &memQueued{}
		h.queued[t] = q
	}
	if room := MaxQueueRefs - len(q.refs); room > 0 {
		q.refs = append(q.refs, cleanRefs(refs, room)...)
	}
	q.until = now + retention.Milliseconds()
	return nil
}

// makeRoom makes room for one more thread's queue ids: it drops the
// expired ones, then, while still full, the one that expires first.
func (h *memHistory) makeRoom(now int64, bound int) {
	if len(h.queued) < bound {
		return
	}
	for t, q := range h.queued {
		if q.until <= now {
			delete(h.queued, t)
		}
	}
	for len(h.queued) >= bound {
		var first policy.ThreadID
		var until int64
		for t, q := range h.queued {
			if first == "" || q.until < until || q.until == until && t < first {
				first, until = t, q.until
			}
		}
		delete(h.queued, first)
	}
}

// Queued implements History.
func (m *Memory) Queued(ctx context.Context, t policy.ThreadID) ([]QueueRef, error) {
	if err := checkAdmin(ctx, t); err != nil {
		return nil, fmt.Errorf("store: queue ids of thread %s: %w", t, err)
	}
	now := m.now().UnixMilli()
	h := &m.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queued[t]
	if q == nil || q.until <= now {
		return nil, nil
	}
	return slices.Clone(q.refs), nil
}

// SaveHistory implements History.
func (m *Memory) SaveHistory(ctx context.Context, e HistoryEntry, keep time.Duration, max int) error {
	err := checkHistory(e, keep)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: save history of thread %s: %w", e.Thread, err)
	}
	e = cleanEntry(e)
	now := m.now().UnixMilli()
	ks := keep.Milliseconds()
	h := &m.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.entries == nil {
		h.entries = make(map[policy.ThreadID]memEntry)
	}
	h.entries[e.Thread] = memEntry{e: e, until: e.LastSeen.UnixMilli() + ks}
	// As Redis does: drop what expired or is older than keep, then the
	// oldest beyond max (ties: the lowest thread id first, as in a zset).
	for t, x := range h.entries {
		if x.until <= now || x.e.LastSeen.UnixMilli() < now-ks {
			delete(h.entries, t)
		}
	}
	if max > 0 && len(h.entries) > max {
		all := make([]memEntry, 0, len(h.entries))
		for _, x := range h.entries {
			all = append(all, x)
		}
		slices.SortFunc(all, func(a, b memEntry) int {
			return cmp.Or(a.e.LastSeen.Compare(b.e.LastSeen), cmp.Compare(a.e.Thread, b.e.Thread))
		})
		for _, x := range all[:len(all)-max] {
			delete(h.entries, x.e.Thread)
		}
	}
	return nil
}

// History implements History: the live entries are copied under the
// mutex, sorted and cloned after.
func (m *Memory) History(ctx context.Context, since time.Time, limit int) ([]HistoryEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: history: %w", err)
	}
	limit = historyLimit(limit)
	now, from := m.now().UnixMilli(), since.UnixMilli() // to the millisecond, as entries are kept
	h := &m.hist
	h.mu.Lock()
	out := make([]HistoryEntry, 0, min(len(h.entries), limit))
	for _, x := range h.entries {
		if x.until > now && x.e.LastSeen.UnixMilli() >= from {
			out = append(out, x.e)
		}
	}
	h.mu.Unlock()
	// Most recent first; ties: the highest thread id first, as a zset
	// read in reverse gives them.
	slices.SortFunc(out, func(a, b HistoryEntry) int {
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(b.Thread, a.Thread))
	})
	out = out[:min(len(out), limit)]
	for i := range out {
		out[i] = cloneEntry(out[i].Summary())
	}
	return out, nil
}

// HistoryOf implements History.
func (m *Memory) HistoryOf(ctx context.Context, t policy.ThreadID) (HistoryEntry, error) {
	if err := checkAdmin(ctx, t); err != nil {
		return HistoryEntry{}, fmt.Errorf("store: history of thread %s: %w", t, err)
	}
	now := m.now().UnixMilli()
	h := &m.hist
	h.mu.Lock()
	x, ok := h.entries[t]
	h.mu.Unlock()
	if !ok || x.until <= now {
		return HistoryEntry{}, fmt.Errorf("store: history of thread %s: %w", t, ErrNotFound)
	}
	return cloneEntry(x.e), nil
}
