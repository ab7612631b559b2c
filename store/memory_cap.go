package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// The memory store's bounds. Besides retention, the store keeps at most
// MemoryConfig.MaxThreads threads and about MemoryConfig.MaxBytes bytes of
// them: past either, the least recently active quiet thread is evicted
// with the links that lead to it, and Evictions counts it. A thread that
// stormed, is blocked or carries an override is evicted only when no quiet
// one is left (the one being recorded is never evicted), so that a flood of
// new threads cannot lift a block.
//
// The threads are kept in two lists, each most recently seen first
// (memThread.prev, next): those Storms lists, and the quiet ones. Eviction
// takes a tail; a listing reads from the heads, at most its limit, without
// sorting every thread under the mutex. A thread's size estimate is kept
// as it changes (memThread.repliesSize, sendersSize, memMeta.repeatsSize),
// so that recounting it costs the same however many senders it has, and
// every collection in it is bounded: replies by the limits, senders by
// MaxSenders, repeats by the replies counted, links by the messages let
// through.

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
	repeatBytes = 64
	linkBytes   = 180
)

// replySize is the estimated bytes of one counted reply.
func replySize(member string) int64 { return replyBytes + int64(len(member)) }

// estimate is th's bytes as MaxBytes counts them, in constant time.
func (th *memThread) estimate() int64 {
	md := &th.meta
	n := threadBytes + len(md.subject) + len(md.sender) + len(md.origSubject) + len(md.origSender) + len(md.stormRule)
	n += len(th.links) * (linkBytes + len(th.id))
	return int64(n) + th.repliesSize + th.sendersSize + md.repeatsSize
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
	m.noteBlock(th)
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

// stormy reports whether th belongs in the storms list: it has stormed,
// is blocked or carries an override. Storms lists those however many
// quiet threads there are, and eviction spares them.
func (th *memThread) stormy() bool {
	return th.meta.stormAt != 0 || th.blockUntil != 0 || th.override != ""
}

// threadList is a list of threads by last seen, most recent first.
type threadList struct{ head, tail *memThread }

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

// place moves th to its place by last seen, normally the head, in the
// list it belongs in now (stormy).
func (m *Memory) place(th *memThread) {
	m.unlink(th)
	l := &m.quiet
	if th.stormy() {
		l = &m.storm
	}
	at := th.meta.lastSeen
	var prev *memThread
	next := l.head
	for i := 0; next != nil && next.meta.lastSeen > at && i < placeSteps; i++ {
		prev, next = next, next.next
	}
	th.prev, th.next, th.list = prev, next, l
	if prev == nil {
		l.head = th
	} else {
		prev.next = th
	}
	if next == nil {
		l.tail = th
	} else {
		next.prev = th
	}
}

// unlink takes th out of its list, if it is in one.
func (m *Memory) unlink(th *memThread) {
	l := th.list
	if l == nil {
		return
	}
	if th.prev == nil {
		l.head = th.next
	} else {
		th.prev.next = th.next
	}
	if th.next == nil {
		l.tail = th.prev
	} else {
		th.next.prev = th.prev
	}
	th.prev, th.next, th.list = nil, nil, nil
}

// drop forgets thread t (expired, reset to nothing, or evicted): the map
// entry, its place in its list, its bytes. Its links expire by
// themselves.
func (m *Memory) drop(t policy.ThreadID) {
	th := m.threads[t]
	if th == nil {
		return
	}
	m.unlink(th)
	m.bytes -= th.size
	delete(m.threads, t)
	delete(m.blocked, t)
}

// over reports whether the store holds more than its bounds allow.
func (m *Memory) over() bool {
	return m.cfg.MaxThreads > 0 && len(m.threads) > m.cfg.MaxThreads ||
		m.cfg.MaxBytes > 0 && m.bytes > m.cfg.MaxBytes
}

// evict drops the least recently seen threads and their links while the
// store is over its bounds, quiet ones first, but never keep (the thread
// just recorded).
func (m *Memory) evict(keep *memThread) {
	last := func(l *threadList) *memThread {
		if th := l.tail; th != keep {
			return th
		}
		return keep.prev
	}
	for m.over() {
		th := last(&m.quiet)
		if th == nil {
			th = last(&m.storm)
		}
		if th == nil {
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

// peek is Record for an auto-reply, under the mutex: the thread's
// override, block and window, read and not written (record.lua the same),
// so that an auto-reply, which is never counted and may be refused for its
// audience alone, leaves nothing behind, not even a thread.
func (m *Memory) peek(r Record, now int64) policy.Tally {
	tally := policy.Tally{Status: policy.StatusNoted, Thread: r.Thread}
	th := m.get(r.Thread, now)
	if th == nil {
		return tally
	}
	tally.Override = parseOverride(th.override)
	for _, x := range th.replies {
		if x.at > now-r.Limits.Window.Milliseconds() {
			tally.Count++
			tally.Delivered += memberAudience(x.member)
		}
	}
	if th.blockUntil != 0 {
		tally.BlockTTL = time.Duration(th.blockUntil-now) * time.Millisecond
	}
	return tally
}

// setSender notes what became of sender's last message, keeping at most
// MaxSenders senders: a new one past that is not kept.
func (th *memThread) setSender(sender, status string) {
	old, ok := th.senders[sender]
	switch {
	case ok:
		th.sendersSize += int64(len(status) - len(old))
	case len(th.senders) >= MaxSenders:
		return
	default:
		if th.senders == nil {
			th.senders = make(map[string]string)
		}
		th.sendersSize += senderBytes + int64(len(sender)+len(status))
	}
	th.senders[sender] = status
}
