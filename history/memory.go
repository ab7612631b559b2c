package history

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// Memory is the history of one node: kept in process, for the memory
// store (store.Memory), behind a mutex of its own so that the report page
// never waits on, or holds up, the mail path. Times are its clock (the
// wall clock), as Redis' TTLs are Redis'.
//
// It is bounded as the memory store is: entries expire at LastSeen+keep
// and the index keeps at most the max Save is given (report.history,
// report.max_storms); queue ids expire at retention (store.retention)
// after their thread's last AddQueued, at most MaxQueueRefs per thread,
// and at most min(store.memory_max_threads, 10,000) threads have them (the
// one whose ids expire first leaves first). Entries are not counted in
// store.memory_max_bytes.
type Memory struct {
	now           func() time.Time
	queuedThreads int // bound on threads with queue ids

	mu      sync.Mutex
	entries map[policy.ThreadID]memEntry
	queued  map[policy.ThreadID]*memQueued
}

// maxQueuedThreads bounds the threads the memory history keeps queue ids
// for (fewer if store.memory_max_threads is lower). Only large-audience
// threads have any: a site sees a handful a day, far below this.
const maxQueuedThreads = 10_000

var _ Store = (*Memory)(nil)

// NewMemory returns an empty memory history. maxThreads is the memory
// store's bound (store.MemoryConfig.MaxThreads, store.memory_max_threads):
// at most min(maxThreads, 10,000) threads keep queue ids; <= 0: 10,000.
func NewMemory(maxThreads int) *Memory {
	bound := maxQueuedThreads
	if maxThreads > 0 {
		bound = min(maxThreads, maxQueuedThreads)
	}
	return &Memory{
		now: time.Now, queuedThreads: bound,
		entries: make(map[policy.ThreadID]memEntry),
		queued:  make(map[policy.ThreadID]*memQueued),
	}
}

type memEntry struct {
	e     Entry // cleaned; never changed once stored (readers copy it)
	until int64 // ms
}

type memQueued struct {
	refs  []QueueRef
	until int64 // ms
}

// AddQueued implements Store.
func (m *Memory) AddQueued(ctx context.Context, t policy.ThreadID, refs []QueueRef, retention time.Duration) error {
	err := checkQueued(t, retention)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("history: add queue ids of thread %s: %w", t, err)
	}
	if len(refs) == 0 {
		return nil
	}
	now := m.now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queued[t]
	if q != nil && q.until <= now {
		q = nil
	}
	if q == nil {
		m.makeRoom(now)
		q = &memQueued{}
		m.queued[t] = q
	}
	if room := MaxQueueRefs - len(q.refs); room > 0 {
		q.refs = append(q.refs, cleanRefs(refs, room)...)
	}
	q.until = now + retention.Milliseconds()
	return nil
}

// makeRoom makes room for one more thread's queue ids: it drops the
// expired ones, then, while still full, the one that expires first.
func (m *Memory) makeRoom(now int64) {
	if len(m.queued) < m.queuedThreads {
		return
	}
	for t, q := range m.queued {
		if q.until <= now {
			delete(m.queued, t)
		}
	}
	for len(m.queued) >= m.queuedThreads {
		var first policy.ThreadID
		var until int64
		for t, q := range m.queued {
			if first == "" || q.until < until || q.until == until && t < first {
				first, until = t, q.until
			}
		}
		delete(m.queued, first)
	}
}

// Queued implements Store.
func (m *Memory) Queued(ctx context.Context, t policy.ThreadID) ([]QueueRef, error) {
	if err := checkGet(ctx, t); err != nil {
		return nil, fmt.Errorf("history: queue ids of thread %s: %w", t, err)
	}
	now := m.now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queued[t]
	if q == nil || q.until <= now {
		return nil, nil
	}
	return slices.Clone(q.refs), nil
}

// Save implements Store.
func (m *Memory) Save(ctx context.Context, e Entry, keep time.Duration, max int) error {
	err := checkEntry(e, keep)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("history: save entry of thread %s: %w", e.Thread, err)
	}
	e = cleanEntry(e)
	now := m.now().UnixMilli()
	ks := keep.Milliseconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[e.Thread] = memEntry{e: e, until: e.LastSeen.UnixMilli() + ks}
	// As Redis does: drop what expired or is older than keep, then the
	// oldest beyond max (ties: the lowest thread id first, as in a zset).
	for t, x := range m.entries {
		if x.until <= now || x.e.LastSeen.UnixMilli() < now-ks {
			delete(m.entries, t)
		}
	}
	if max > 0 && len(m.entries) > max {
		all := make([]memEntry, 0, len(m.entries))
		for _, x := range m.entries {
			all = append(all, x)
		}
		slices.SortFunc(all, func(a, b memEntry) int {
			return cmp.Or(a.e.LastSeen.Compare(b.e.LastSeen), cmp.Compare(a.e.Thread, b.e.Thread))
		})
		for _, x := range all[:len(all)-max] {
			delete(m.entries, x.e.Thread)
		}
	}
	return nil
}

// List implements Store: the live entries are copied under the
// mutex, sorted and cloned after.
func (m *Memory) List(ctx context.Context, since time.Time, limit int) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("history: list: %w", err)
	}
	limit = listLimit(limit)
	now, from := m.now().UnixMilli(), since.UnixMilli() // to the millisecond, as entries are kept
	m.mu.Lock()
	out := make([]Entry, 0, min(len(m.entries), limit))
	for _, x := range m.entries {
		if x.until > now && x.e.LastSeen.UnixMilli() >= from {
			out = append(out, x.e)
		}
	}
	m.mu.Unlock()
	// Most recent first; ties: the highest thread id first, as a zset
	// read in reverse gives them.
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(b.Thread, a.Thread))
	})
	out = out[:min(len(out), limit)]
	for i := range out {
		out[i] = cloneEntry(out[i].Summary())
	}
	return out, nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, t policy.ThreadID) (Entry, error) {
	if err := checkGet(ctx, t); err != nil {
		return Entry{}, fmt.Errorf("history: entry of thread %s: %w", t, err)
	}
	now := m.now().UnixMilli()
	m.mu.Lock()
	x, ok := m.entries[t]
	m.mu.Unlock()
	if !ok || x.until <= now {
		return Entry{}, fmt.Errorf("history: entry of thread %s: %w", t, ErrNotFound)
	}
	return cloneEntry(x.e), nil
}
