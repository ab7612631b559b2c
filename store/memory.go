package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// Memory is the store for a single node: the default when no Redis is
// configured, and the daemon's fallback while Redis is down. It keeps the
// same state as the Redis store, with the same semantics (store/storetest
// proves it), in maps behind one mutex.
//
// Expiry is lazy, by each record's time (Record.Now): a thread's state is
// dropped when it is next touched after its window, block or retention has
// passed. So that memory stays flat however many messages go by, every
// Record also samples a few entries and drops the expired ones, as Redis
// does with its keys.
//
// What is not given a time uses the wall clock: link lookups (Resolve),
// override TTLs (SetOverride) and Reset. Thread uses the time it is given.
type Memory struct {
	now func() time.Time // wall clock, for what has no Record.Now

	mu         sync.Mutex
	threads    map[policy.ThreadID]*memThread
	links      map[policy.Key]memLink
	lists      map[string]int
	exempt     map[string]struct{}
	posters    map[string]struct{}
	listPolicy map[string]policy.ListPolicy
	mode       policy.Mode

	peakThreads, peakLinks int // high-water marks since the maps were last rebuilt

	// Bounds and eviction (memory_cap.go): the threads, most recently
	// seen first, in two lists: those storms lists (stormed, blocked or
	// overridden) and the quiet ones; their estimated bytes.
	cfg          MemoryConfig
	quiet, storm threadList
	bytes        int64
	evictions    atomic.Uint64

	// The blocked threads, until when (store/blocked.go), and the same
	// entries by until.
	blocked   map[policy.ThreadID]int64
	blockedBy blockedHeap
}

var (
	_ Store = (*Memory)(nil)
	_ Admin = (*Memory)(nil)
)

// Sampling expiry: each Record looks at sampleSize entries of each map and
// looks again, up to sampleRounds times, while more than a quarter of them
// had expired.
const (
	sampleSize   = 20
	sampleRounds = 4
	// A map is rebuilt once it holds less than a quarter of its peak
	// (Go maps never give memory back): this many entries at least.
	shrinkMin = 1 << 14
)

type memLink struct {
	thread policy.ThreadID
	until  int64 // ms
}

type memReply struct {
	member string
	at     int64 // ms
}

// memThread mirrors a thread's five Redis keys. Times are Unix ms.
type memThread struct {
	replies      []memReply
	repliesUntil int64

	meta      memMeta
	senders   map[string]string // at most MaxSenders
	metaUntil int64             // meta and senders

	blockRule  string
	blockUntil int64 // 0: not blocked

	override      string // raw, as an operator could have written it
	overrideUntil int64  // 0: no expiry

	// Bookkeeping of the bounds (memory_cap.go).
	id          policy.ThreadID
	prev, next  *memThread  // its list by last seen
	list        *threadList // the list it is in, nil if none
	links       []policy.Key
	linksKept   int   // len(links) after the last compaction
	size        int64 // estimated bytes, as counted in Memory.bytes
	repliesSize int64 // estimated bytes of replies, kept as they change
	sendersSize int64 // of senders, likewise
}

// memMeta mirrors the {T}:meta hash.
type memMeta struct {
	seen                    bool
	subject, sender         string
	firstSeen, lastSeen     int64
	window                  int64
	audience                int
	origSeen                bool
	origSender, origSubject string
	origAudience            int
	origAt                  int64
	accepted, refused       int
	allowed                 int
	stormAt                 int64
	stormRule               string
	repeats                 map[string]int // message key -> passes as itself ("dup:<msg>" fields)
	repeatsSize             int64          // estimated bytes of repeats, kept as it grows
}

// NewMemory returns an empty memory store with MemoryDefaults' bounds
// (NewMemoryWith sets others).
func NewMemory() *Memory {
	return &Memory{
		now:        time.Now,
		threads:    make(map[policy.ThreadID]*memThread),
		links:      make(map[policy.Key]memLink),
		lists:      make(map[string]int),
		exempt:     make(map[string]struct{}),
		posters:    make(map[string]struct{}),
		listPolicy: make(map[string]policy.ListPolicy),
		blocked:    make(map[policy.ThreadID]int64),
		cfg:        MemoryDefaults(),
	}
}

// expire drops what has expired as of now, as Redis would have.
func (th *memThread) expire(now int64) {
	if th.repliesUntil <= now {
		th.replies, th.repliesUntil, th.repliesSize = nil, 0, 0
	}
	if th.metaUntil <= now {
		th.meta, th.senders, th.metaUntil, th.sendersSize = memMeta{}, nil, 0, 0
	}
	if th.blockUntil != 0 && th.blockUntil <= now {
		th.blockRule, th.blockUntil = "", 0
	}
	if th.overrideUntil != 0 && th.overrideUntil <= now {
		th.override, th.overrideUntil = "", 0
	}
}

func (th *memThread) empty() bool {
	return !th.meta.seen && len(th.replies) == 0 && th.blockUntil == 0 && th.override == "" && len(th.senders) == 0
}

// get returns the thread's live state as of now, or nil.
func (m *Memory) get(t policy.ThreadID, now int64) *memThread {
	th := m.threads[t]
	if th == nil {
		return nil
	}
	th.expire(now)
	if th.empty() {
		m.drop(t)
		return nil
	}
	return th
}

func (m *Memory) getOrCreate(t policy.ThreadID, now int64) *memThread {
	if th := m.get(t, now); th != nil {
		return th
	}
	th := &memThread{id: t}
	m.threads[t] = th
	m.peakThreads = max(m.peakThreads, len(m.threads))
	return th
}

// Record implements Store: the same steps as record.lua, under the mutex.
func (m *Memory) Record(ctx context.Context, r Record) (policy.Tally, error) {
	err := r.check()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return policy.Tally{}, fmt.Errorf("store: record thread %s: %w", r.Thread, err)
	}
	msg, member := r.member()
	sender := r.sender()
	now := r.Now.UnixMilli()
	window := r.Limits.Window.Milliseconds()
	blockFor := r.Limits.BlockFor.Milliseconds()

	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Kind == policy.KindAutoReply {
		return m.peek(r, now), nil
	}
	th := m.getOrCreate(r.Thread, now)

	md := &th.meta
	if !md.seen {
		md.seen, md.firstSeen, md.audience = true, now, r.Audience
	}
	if md.subject == "" {
		md.subject = r.Subject
	}
	if md.sender == "" {
		md.sender = sender
	}
	md.lastSeen, md.window = now, window
	md.audience = max(md.audience, r.Audience)
	if r.Kind == policy.KindOriginal && !md.origSeen {
		md.origSeen = true
		md.origSender, md.origSubject, md.origAudience, md.origAt = sender, r.Subject, r.Audience, now
	}

	tally := policy.Tally{Override: parseOverride(th.override), Status: policy.StatusNoted, Thread: r.Thread}

	th.replies = slices.DeleteFunc(th.replies, func(x memReply) bool { return x.at <= now-window })
	same := false // this very message (id, sender, audience) was counted
	th.repliesSize = 0
	for _, x := range th.replies {
		tally.Delivered += memberAudience(x.member)
		if msg != "" && x.member == member {
			same = true
		}
		th.repliesSize += replySize(x.member)
	}
	tally.Count = len(th.replies)
	blocked := th.blockUntil != 0
	if blocked {
		tally.BlockTTL = time.Duration(th.blockUntil-now) * time.Millisecond
	}

	senderStatus := ""
	switch {
	case tally.Override != policy.OverrideNone:
		senderStatus = string(tally.Override)
		if r.Kind == policy.KindReply {
			if tally.Override == policy.OverrideAllow {
				md.allowed++
			} else {
				md.refused++
			}
		}
	case r.Kind != policy.KindReply:
	case same && policy.Repeats(md.repeat(msg)):
		tally.Status = policy.StatusDuplicate
	case blocked:
		tally.Status = policy.StatusBlocked
		md.refused++
	default:
		if rule := policy.Crossed(r.Limits, policy.Window{Count: tally.Count, Delivered: tally.Delivered}, r.Audience); rule != "" {
			th.blockRule, th.blockUntil = string(rule), now+blockFor
			md.stormAt, md.stormRule = now, string(rule)
			md.refused++
			tally.Status, tally.Crossed = policy.StatusCrossed, rule
			tally.BlockTTL = r.Limits.BlockFor.Truncate(time.Millisecond)
		} else {
			if same { // passes ran out: it counts again, as an entry of its own
				member = repeatMember(member, md.repeats[msg])
			}
			th.replies = append(th.replies, memReply{member: member, at: now})
			th.repliesSize += replySize(member)
			th.repliesUntil = max(th.repliesUntil, now+window)
			md.accepted++
			tally.Status = policy.StatusCounted
			tally.Count++
			tally.Delivered += int64(r.Audience)
		}
	}
	if senderStatus == "" {
		senderStatus = string(tally.Status)
	}
	if sender != "" {
		th.setSender(sender, senderStatus)
	}
	th.metaUntil = now + max(r.Retention.Milliseconds(), tally.BlockTTL.Milliseconds())

	if policy.MayLink(r.Kind, tally) { // a refused message links nothing
		link := memLink{thread: r.Thread, until: now + r.Retention.Milliseconds()}
		for _, k := range r.Links {
			m.linkNX(k, link, now)
		}
	}
	m.peakLinks = max(m.peakLinks, len(m.links))
	m.recorded(r, th, now) // bounds, listing order, then sweep (memory_cap.go)
	return tally, nil
}

// linkNX writes link k unless a live one exists: the first writer wins,
// so no later message, a forged one included, moves an identity to
// another thread (Redis: SET NX).
func (m *Memory) linkNX(k policy.Key, l memLink, now int64) {
	if old, ok := m.links[k]; ok && old.until > now {
		return
	}
	m.links[k] = l
}

// repeat counts one more pass of message key msg as itself and returns
// the count (record.lua: HINCRBY meta "dup:<msg>").
func (md *memMeta) repeat(msg string) int {
	if md.repeats == nil {
		md.repeats = make(map[string]int)
	}
	if _, ok := md.repeats[msg]; !ok {
		md.repeatsSize += repeatBytes + int64(len(msg))
	}
	md.repeats[msg]++
	return md.repeats[msg]
}

// sweep drops a sample of expired threads and links (see sampleSize) and
// rebuilds a map that has shrunk well below its peak.
func (m *Memory) sweep(now int64) {
	for range sampleRounds {
		seen, dropped := 0, 0
		for t, th := range m.threads { // map order is random: a fresh sample each time
			if seen == sampleSize {
				break
			}
			seen++
			if th.expire(now); th.empty() {
				m.drop(t)
				dropped++
			}
		}
		links := 0
		for k, l := range m.links {
			if links == 2*sampleSize { // a message has a few links: look at more
				break
			}
			links++
			if l.until <= now {
				delete(m.links, k)
				dropped++
			}
		}
		if seen += links; dropped*4 <= seen {
			break
		}
	}
	if m.peakThreads >= shrinkMin && len(m.threads) < m.peakThreads/4 {
		m.threads = rebuild(m.threads)
		m.peakThreads = len(m.threads)
	}
	if m.peakLinks >= shrinkMin && len(m.links) < m.peakLinks/4 {
		m.links = rebuild(m.links)
		m.peakLinks = len(m.links)
	}
}

// rebuild copies a map into one sized for what it holds now (maps.Clone
// would keep the old size).
func rebuild[K comparable, V any](old map[K]V) map[K]V {
	m := make(map[K]V, len(old))
	for k, v := range old {
		m[k] = v
	}
	return m
}

// Resolve implements Store. Links expire by the wall clock.
func (m *Memory) Resolve(ctx context.Context, keys []policy.Key) ([]policy.ThreadID, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: resolve: %w", err)
	}
	now := m.now().UnixMilli()
	out := make([]policy.ThreadID, len(keys))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range keys {
		if l, ok := m.links[k]; ok && l.until > now {
			out[i] = l.thread
		}
	}
	return out, nil
}

// Globals implements Store.
func (m *Memory) Globals(ctx context.Context) (Globals, error) {
	if err := ctx.Err(); err != nil {
		return Globals{}, fmt.Errorf("store: globals: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return Globals{
		Lists:   maps.Clone(m.lists),
		Exempt:  slices.Sorted(maps.Keys(m.exempt)),
		Posters: slices.Sorted(maps.Keys(m.posters)),
		Mode:    m.mode,
		// ListPolicy values share their Posters slices: they are never
		// changed in place (SetListPolicy replaces them).
		ListPolicies: maps.Clone(m.listPolicy),
	}, nil
}

// Close implements Store; a memory store holds nothing to release.
func (m *Memory) Close() error { return nil }

// SetOverride implements Admin. The TTL runs on the wall clock.
func (m *Memory) SetOverride(ctx context.Context, t policy.ThreadID, o policy.Override, ttl time.Duration) error {
	if err := checkAdmin(ctx, t); err != nil {
		return fmt.Errorf("store: override thread %s: %w", t, err)
	}
	if err := checkOverride(o); err != nil {
		return fmt.Errorf("store: override thread %s: %w", t, err)
	}
	if ttl < 0 {
		return fmt.Errorf("store: override thread %s: %w: ttl %v", t, ErrInvalid, ttl)
	}
	m.setOverride(t, string(o), ttl)
	return nil
}

func (m *Memory) setOverride(t policy.ThreadID, v string, ttl time.Duration) {
	now := m.now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	if v == "" {
		if th := m.get(t, now); th != nil {
			th.override, th.overrideUntil = "", 0
			if th.empty() {
				m.drop(t)
			} else {
				m.place(th) // quiet again, perhaps
				m.noteBlock(th)
			}
		}
		return
	}
	th := m.getOrCreate(t, now)
	th.override, th.overrideUntil = v, 0
	if ttl > 0 {
		th.overrideUntil = now + max(ttl.Milliseconds(), 1)
	}
	m.place(th)
	m.noteBlock(th)
	m.resize(th)
}

// Reset implements Admin.
func (m *Memory) Reset(ctx context.Context, t policy.ThreadID) error {
	if err := checkAdmin(ctx, t); err != nil {
		return fmt.Errorf("store: reset thread %s: %w", t, err)
	}
	now := m.now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	th := m.get(t, now)
	if th == nil {
		return fmt.Errorf("store: reset thread %s: %w", t, ErrNotFound)
	}
	th.replies, th.repliesUntil = nil, 0
	th.blockRule, th.blockUntil = "", 0
	th.override, th.overrideUntil = "", 0
	th.senders, th.sendersSize, th.repliesSize = nil, 0, 0
	md := &th.meta
	md.accepted, md.refused, md.allowed, md.stormAt, md.stormRule = 0, 0, 0, 0, ""
	if th.empty() {
		m.drop(t)
	} else {
		m.place(th) // quiet again
		m.noteBlock(th)
		m.resize(th)
	}
	return nil
}

// SetList implements Admin.
func (m *Memory) SetList(ctx context.Context, addr string, members int) error {
	a, err := normAddr("list address", addr)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: set list %s: %w", addr, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if members <= 0 {
		delete(m.lists, a)
	} else {
		m.lists[a] = members
	}
	return nil
}

// SetListPolicy implements Admin.
func (m *Memory) SetListPolicy(ctx context.Context, addr string, p policy.ListPolicy) error {
	a, err := normAddr("list address", addr)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		p, _, err = normListPolicy(p)
	}
	if err != nil {
		return fmt.Errorf("store: set list policy %s: %w", addr, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.IsZero() {
		delete(m.listPolicy, a)
	} else {
		m.listPolicy[a] = p // normListPolicy made its own Posters
	}
	return nil
}

// SetMode implements Admin.
func (m *Memory) SetMode(ctx context.Context, mode policy.Mode) error {
	err := checkMode(mode)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: set mode: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mode = mode
	return nil
}

// AddExempt implements Admin.
func (m *Memory) AddExempt(ctx context.Context, sender string) error {
	s, err := normAddr("exempt sender", sender)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: add exempt %s: %w", sender, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exempt[s] = struct{}{}
	return nil
}

// AddPoster implements Admin.
func (m *Memory) AddPoster(ctx context.Context, poster string) error {
	s, err := normAddr("poster", poster)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: add poster %s: %w", poster, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.posters[s] = struct{}{}
	return nil
}

// RemovePoster implements Admin.
func (m *Memory) RemovePoster(ctx context.Context, poster string) (bool, error) {
	s, err := normAddr("poster", poster)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return false, fmt.Errorf("store: remove poster %s: %w", poster, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.posters[s]
	delete(m.posters, s)
	return ok, nil
}

// Thread implements Admin.
func (m *Memory) Thread(ctx context.Context, t policy.ThreadID, now time.Time) (ThreadInfo, error) {
	if err := checkAdmin(ctx, t); err != nil {
		return ThreadInfo{}, fmt.Errorf("store: thread %s: %w", t, err)
	}
	m.mu.Lock()
	info, ok := m.info(m.threads[t], now.UnixMilli(), true)
	m.mu.Unlock()
	if !ok {
		return ThreadInfo{}, fmt.Errorf("store: thread %s: %w", t, ErrNotFound)
	}
	return info.build(t), nil
}

// info is what Thread reports of p as of ms (p may be nil), and false
// when p holds nothing then; its senders only when asked (listings leave
// them out). It copies what it reads and changes nothing: asking about a
// time must not change the state. The caller holds m.mu.
func (m *Memory) info(p *memThread, ms int64, senders bool) (threadInfo, bool) {
	var th memThread
	if p != nil {
		th = *p
		th.expire(ms)
	}
	if th.empty() {
		return threadInfo{}, false
	}
	md := &th.meta
	info := threadInfo{
		subject: md.subject, sender: md.sender, origSubject: md.origSubject, origSender: md.origSender,
		origSeen: md.origSeen, firstSeen: md.firstSeen, lastSeen: md.lastSeen, stormAt: md.stormAt,
		stormRule: md.stormRule, audience: md.audience,
		accepted: md.accepted, refused: md.refused, allowed: md.allowed,
		override: th.override,
	}
	if senders {
		info.senders = maps.Clone(th.senders)
	}
	for _, x := range th.replies {
		if x.at > ms-md.window {
			info.inWindow++
		}
	}
	if th.blockUntil != 0 {
		info.blocked, info.blockTTL = true, th.blockUntil-ms
	}
	if th.overrideUntil != 0 {
		info.overrideTTL = th.overrideUntil - ms
	}
	return info, true
}
