package store

import (
	"errors"
	"fmt"

	"github.com/stormguard/stormguard/policy"
)

// The memory store's bounds. Besides retention, the store keeps at most
// MemoryConfig.MaxThreads threads and about MemoryConfig.MaxBytes bytes of
// them: past either, the least recently active thread is evicted with the
// links that lead to it, and Evictions counts it.
//
// The threads that have had a message are kept in a list, most recently
// seen first (memThread.prev, next), so that eviction takes the tail and a
// listing reads the head without sorting every thread under the mutex.

// MemoryConfig bounds the memory store (the store.memory_* keys of
// cmd/stormguard).
type MemoryConfig struct {
	MaxThreads int   // threads kept at most; 0: no bound
	MaxBytes   int64 // estimated bytes of threads and their links kept at most; 0: no bound
}

// MemoryDefaults are the bounds when nothing is configured: 100,000
// threads and 256 MiB, far above what a site's day of large-audience
// threads holds (docs/operations.md, sizing).
func MemoryDefaults() MemoryConfig {
	return MemoryConfig{MaxThreads: 100_000, MaxBytes: 256 << 20}
}

// Validate reports a bound that cannot be.
func (c MemoryConfig) Validate() error {
	var errs []error
	if c.MaxThreads < 0 {
		errs = append(errs, fmt.Errorf("max threads %d: want >= 0", c.MaxThreads))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max bytes %d: want >= 0", c.MaxBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: memory config: %w", err)
	}
	return nil
}

// NewMemoryWith returns an empty memory store bounded by c (which must
// pass Validate; a negative bound counts as none).
func NewMemoryWith(c MemoryConfig) *Memory {
	m := NewMemory()
	m.cfg = c
	return m
}

// Evictions is how many threads the bounds have evicted since the store
// was made.
func (m *Memory) Evictions() uint64 { return m.evictions.Load() }

// Size reports the threads kept and the estimate of their bytes that
// MaxBytes bounds.
func (m *Memory) Size() (threads int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.threads), m.bytes
}

// Estimated bytes, measured on amd64 with Go 1.24 (TestMemoryBytesEstimate
// and docs/performance.md): a thread's struct, its map entry and meta;
// each counted reply; each sender; each link (the links map entry, the
// key and the thread's note of it).
const (
	threadBytes = 560
	replyBytes  = 48
	senderBytes = 96
	linkBytes   = 180
)

// estimate is th's bytes as MaxBytes counts them.
func (th *memThread) estimate() int64 {
	md := &th.meta
	n := threadBytes + len(md.subject) + len(md.sender) + len(md.origSubject) + len(md.origSender) + len(md.stormRule)
	for _, r := range th.replies {
		n += replyBytes + len(r.member)
	}
	for s, v := range th.senders {
		n += senderBytes + len(s) + len(v)
	}
	n += len(th.links) * (linkBytes + len(th.id))
	return int64(n)
}

// recorded is Record's last step, under the mutex: note the links r wrote
// to th, put th at its place by last seen, note it if it stormed or is
// overridden, recount its bytes, evict past the bounds and sample expired
// entries (sweep).
func (m *Memory) recorded(r Record, th *memThread, now int64) {
	th.id = r.Thread
	for _, k := range r.Links {
		m.noteLink(th, k)
	}
	if len(th.links) > 2*th.linksKept+8 {
		m.compactLinks(th)
	}
	m.place(th)
	m.noteStormy(th)
	m.resize(th)
	m.evict(th)
	m.sweep(now)
}

// noteLink notes that link k leads to th, if it does.
func (m *Memory) noteLink(th *memThread, k policy.Key) {
	if l, ok := m.links[k]; ok && l.thread == th.id {
		th.links = append(th.links, k)
	}
}

// compactLinks drops from th.links the keys noted twice and those that no
// longer lead to th, so that a thread's note of its links grows with its
// links, not with its messages (a subject key is written by each reply).
func (m *Memory) compactLinks(th *memThread) {
	seen := make(map[policy.Key]struct{}, len(th.links))
	kept := th.links[:0]
	for _, k := range th.links {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if l, ok := m.links[k]; ok && l.thread == th.id {
			kept = append(kept, k)
		}
	}
	clear(th.links[len(kept):])
	th.links, th.linksKept = kept, len(kept)
}

// noteStormy keeps th in the storms index while it has stormed, is blocked
// or carries an override: storms lists those however many quiet threads
// there are.
func (m *Memory) noteStormy(th *memThread) {
	if th.meta.stormAt != 0 || th.blockUntil != 0 || th.override != "" {
		m.stormy[th.id] = struct{}{}
	}
}

// resize recounts th's bytes.
func (m *Memory) resize(th *memThread) {
	n := th.estimate()
	m.bytes += n - th.size
	th.size = n
}

// placeSteps bounds the walk that keeps the list in last-seen order: a
// record whose time is older than that many threads' (clocks of several
// callers) is placed a little early, which listing corrects by sorting
// what it copied.
const placeSteps = 64

// place moves th to its place in the list by last seen, normally the head.
func (m *Memory) place(th *memThread) {
	m.unlink(th)
	at := th.meta.lastSeen
	var prev *memThread
	next := m.head
	for i := 0; next != nil && next.meta.lastSeen > at && i < placeSteps; i++ {
		prev, next = next, next.next
	}
	th.prev, th.next, th.listed = prev, next, true
	if prev == nil {
		m.head = th
	} else {
		prev.next = th
	}
	if next == nil {
		m.tail = th
	} else {
		next.prev = th
	}
}

// unlink takes th out of the list, if it is in it.
func (m *Memory) unlink(th *memThread) {
	if !th.listed {
		return
	}
	if th.prev == nil {
		m.head = th.next
	} else {
		th.prev.next = th.next
	}
	if th.next == nil {
		m.tail = th.prev
	} else {
		th.next.prev = th.prev
	}
	th.prev, th.next, th.listed = nil, nil, false
}

// drop forgets thread t (expired, reset to nothing, or evicted): the map
// entry, its place in the list, its bytes, its storms entry. Its links
// expire by themselves.
func (m *Memory) drop(t policy.ThreadID) {
	th := m.threads[t]
	if th == nil {
		return
	}
	m.unlink(th)
	m.bytes -= th.size
	delete(m.threads, t)
	delete(m.stormy, t)
}

// over reports whether the store holds more than its bounds allow.
func (m *Memory) over() bool {
	return m.cfg.MaxThreads > 0 && len(m.threads) > m.cfg.MaxThreads ||
		m.cfg.MaxBytes > 0 && m.bytes > m.cfg.MaxBytes
}

// evict drops the least recently seen threads and their links while the
// store is over its bounds, but never keep (the thread just recorded).
func (m *Memory) evict(keep *memThread) {
	for m.over() {
		th := m.tail
		if th == nil || th == keep {
			return
		}
		for _, k := range th.links {
			if l, ok := m.links[k]; ok && l.thread == th.id {
				delete(m.links, k)
			}
		}
		m.drop(th.id)
		m.evictions.Add(1)
	}
}
