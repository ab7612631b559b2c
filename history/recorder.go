package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Defaults of what no config key sets.
const (
	// FlushEvery is how often pending notes are written: the history lags
	// the mail by at most this (plus the writes).
	FlushEvery = 2 * time.Second
	// DefaultQueue is how many notes may wait for the next flush.
	DefaultQueue = 10000
	// maxPending bounds the threads one flush writes; notes of further
	// threads are dropped and counted.
	maxPending = 5000
	// maxNotable bounds the threads remembered as notable between flushes.
	maxNotable = 20000
	// maxRecordedLists bounds the lists the recorder notes in an entry.
	maxRecordedLists = 16
)

// Config is what the Recorder needs (the report.* keys, and node,
// store.retention and the site's limits).
type Config struct {
	Node      string        // this node's name in queue ids (config node)
	History   time.Duration // how long an entry is kept (report.history)
	NearMiss  float64       // share of a limit that makes a near miss (report.near_miss)
	MaxStorms int           // entries kept at most (report.max_storms)
	Retention time.Duration // how long a thread's queue ids are kept (store.retention)
	Limits    policy.Limits // the limits a near miss is a share of
	Timeout   time.Duration // deadline of one store call
	Flush     time.Duration // how often pending notes are written (0: FlushEvery)
	Queue     int           // notes waiting at most (0: DefaultQueue)
}

// Defaults are the report.* keys' defaults.
func Defaults() Config {
	return Config{History: 90 * 24 * time.Hour, NearMiss: 0.5, MaxStorms: 10000}
}

// Validate reports the first setting that cannot work, naming its key.
func (c Config) Validate() error {
	if c.History <= 0 {
		return fmt.Errorf("report.history: must be positive, got %s", c.History)
	}
	if !(c.NearMiss > 0 && c.NearMiss <= 1) {
		return fmt.Errorf("report.near_miss: must be more than 0 and at most 1 (a share of max_replies or delivery_budget, 0.5 for half), got %v", c.NearMiss)
	}
	if c.MaxStorms < 1 {
		return fmt.Errorf("report.max_storms: must be at least 1, got %d", c.MaxStorms)
	}
	if c.Node == "" {
		return errors.New("node: empty (the default is the host name)")
	}
	return nil
}

// Threads is what the Recorder reads of the live store: a thread's record
// (store.Admin's Thread), merged into its entry.
type Threads interface {
	Thread(ctx context.Context, t policy.ThreadID, now time.Time) (store.ThreadInfo, error)
}

// Note is what the recorder is told of one decision of a message that went
// to the store.
type Note struct {
	Thread    policy.ThreadID
	Rule      policy.Rule
	Action    policy.Action
	Kind      policy.Kind
	QueueID   string // the MTA's {i}; "" when it did not send it
	Sender    string // envelope sender
	Subject   string
	Lists     []string // registered lists among the envelope recipients
	Audience  int
	Count     int   // replies counted in the thread's window
	Delivered int64 // sum of their audiences
	// Limits are the limits the message was counted under (its lists'
	// strictest, policy.Effective); zero: Config.Limits, the site's.
	Limits policy.Limits
	Time   time.Time
}

// Stats are the recorder's counters; safe for concurrent use.
type Stats struct {
	Dropped     atomic.Uint64 // notes dropped: the queue was full, or too many threads in one flush
	WriteErrors atomic.Uint64 // failed store calls (each logged, rate-limited)
	Saved       atomic.Uint64 // history entries written
	Queued      atomic.Uint64 // queue ids written
}

// Recorder writes the history off the mail path: it is told every
// decision of a message that went to the store and writes the queue ids of
// the messages let through or held (Store.AddQueued) and, for every
// notable thread (policy.Notable: a storm, an operator's override, a near
// miss), a snapshot of its entry (Store.Save): the live thread merged with
// the entry before. Note never waits: a note that finds the queue full is
// dropped and counted.
type Recorder struct {
	cfg     Config
	h       Store
	threads Threads
	log     *slog.Logger
	now     func() time.Time
	ch      chan Note

	mu       sync.RWMutex // guards closed against Note's send
	closed   bool
	closeCtx context.Context // Close's, read by the loop once ch is closed
	done     chan struct{}

	// The loop's own (no lock): threads known to be notable, with when
	// they were last noted, so that they keep being snapshotted.
	notable map[policy.ThreadID]time.Time
	lastErr time.Time // of the last logged write error

	Stats Stats
}

// NewRecorder starts a recorder writing to h, reading live threads from
// threads. log may be nil (slog.Default), now may be nil (time.Now).
func NewRecorder(cfg Config, h Store, threads Threads, log *slog.Logger, now func() time.Time) (*Recorder, error) {
	r, err := newRecorder(cfg, h, threads, log, now)
	if err != nil {
		return nil, err
	}
	go r.run()
	return r, nil
}

// newRecorder makes a recorder without starting its loop (tests fill its
// queue this way).
func newRecorder(cfg Config, h Store, threads Threads, log *slog.Logger, now func() time.Time) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil || threads == nil {
		return nil, errors.New("history: the recorder needs a history store and the live store")
	}
	if cfg.Flush <= 0 {
		cfg.Flush = FlushEvery
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Recorder{cfg: cfg, h: h, threads: threads, log: log, now: now, ch: make(chan Note, cfg.Queue),
		done: make(chan struct{}), notable: map[policy.ThreadID]time.Time{}}, nil
}

// Note queues n for the next flush; when the queue is full, n is dropped
// and counted. It never waits, and does nothing after Close.
func (r *Recorder) Note(n Note) {
	if n.Thread == "" || n.Rule == policy.RuleStoreError {
		return // nothing counted it: nothing to keep
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	select {
	case r.ch <- n:
	default:
		r.Stats.Dropped.Add(1)
	}
}

// Close stops taking notes and writes what is pending, until ctx ends. It
// reports whether everything pending was written.
func (r *Recorder) Close(ctx context.Context) bool {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.closeCtx = ctx
		close(r.ch)
	}
	r.mu.Unlock()
	select {
	case <-r.done:
		return ctx.Err() == nil // the flush stops early when ctx ends
	case <-ctx.Done():
		return false
	}
}

// pending is what one flush writes for one thread.
type pending struct {
	refs     []QueueRef
	notable  bool
	nearMiss time.Time // first note of this flush that was a near miss
	stormAt  time.Time // first note of this flush with a storm rule
	rule     policy.Rule
	subject  string
	sender   string // of the first note, when the store no longer has the thread
	lists    []string
	audience int
	first    time.Time
	last     time.Time
}

func (r *Recorder) run() {
	defer close(r.done)
	tick := time.NewTicker(r.cfg.Flush)
	defer tick.Stop()
	batch := map[policy.ThreadID]*pending{}
	for {
		select {
		case n, ok := <-r.ch:
			if !ok {
				r.flush(r.closeCtx, batch)
				return
			}
			r.add(batch, n)
		case <-tick.C:
			r.flush(context.Background(), batch)
			batch = map[policy.ThreadID]*pending{}
		}
	}
}

// add folds one note into the batch.
func (r *Recorder) add(batch map[policy.ThreadID]*pending, n Note) {
	p := batch[n.Thread]
	if p == nil {
		if len(batch) >= maxPending {
			r.Stats.Dropped.Add(1)
			return
		}
		p = &pending{first: n.Time, subject: n.Subject, sender: n.Sender}
		batch[n.Thread] = p
	}
	if n.Time.After(p.last) {
		p.last = n.Time
	}
	p.audience = max(p.audience, n.Audience)
	p.lists = union(p.lists, n.Lists, maxRecordedLists)
	if n.QueueID != "" {
		status := ""
		switch n.Action {
		case policy.ActionAccept, policy.ActionTag:
			status = QueueAccepted
		case policy.ActionHold:
			status = QueueHeld
		}
		if status != "" && len(p.refs) < MaxQueueRefs {
			p.refs = append(p.refs, QueueRef{Node: r.cfg.Node, ID: n.QueueID, Kind: string(n.Kind),
				Sender: n.Sender, Status: status, Time: n.Time})
		}
	}
	limits := n.Limits
	if limits == (policy.Limits{}) {
		limits = r.cfg.Limits
	}
	near := n.Kind == policy.KindReply && policy.NearMiss(limits, n.Count, n.Delivered, r.cfg.NearMiss)
	if near && p.nearMiss.IsZero() {
		p.nearMiss = n.Time
	}
	if policy.IsStormRule(n.Rule) && p.stormAt.IsZero() {
		p.stormAt, p.rule = n.Time, n.Rule
	}
	if policy.Notable(n.Rule, near) {
		p.notable = true
	}
}

// flush writes a batch: queue ids, then the notable threads' entries.
func (r *Recorder) flush(ctx context.Context, batch map[policy.ThreadID]*pending) {
	now := r.now()
	for t, p := range batch {
		if ctx.Err() != nil {
			return
		}
		if len(p.refs) > 0 {
			err := r.call(ctx, func(ctx context.Context) error {
				return r.h.AddQueued(ctx, t, p.refs, r.cfg.Retention)
			})
			if r.failed("add queue ids", t, err) {
				continue
			}
			r.Stats.Queued.Add(uint64(len(p.refs)))
		}
		if _, known := r.notable[t]; !p.notable && !known {
			continue // not notable, now or before: its queue ids are enough
		}
		r.notable[t] = now // a thread that was notable stays notable while it gets mail
		r.failed("save the history entry", t, r.snapshot(ctx, t, p, now))
	}
	r.forget(now)
}

// forget drops the notable threads not noted for store.retention (their
// record is gone), and the oldest beyond maxNotable.
func (r *Recorder) forget(now time.Time) {
	for t, at := range r.notable {
		if now.Sub(at) > r.cfg.Retention {
			delete(r.notable, t)
		}
	}
	for len(r.notable) > maxNotable {
		var oldest policy.ThreadID
		var at time.Time
		for t, a := range r.notable {
			if oldest == "" || a.Before(at) {
				oldest, at = t, a
			}
		}
		delete(r.notable, oldest)
	}
}

// call runs one store call with its own deadline.
func (r *Recorder) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	return f(ctx)
}

// failed counts and logs (at most once every 10 seconds) a failed write;
// it reports whether err is one.
func (r *Recorder) failed(what string, t policy.ThreadID, err error) bool {
	if err == nil {
		return false
	}
	r.Stats.WriteErrors.Add(1)
	if now := time.Now(); now.Sub(r.lastErr) >= 10*time.Second {
		r.lastErr = now
		r.log.Warn("history: cannot "+what+"; the report and `stormguard storms --since` miss it until the next write",
			"thread", t, "err", err, "write_errors", r.Stats.WriteErrors.Load())
	}
	return true
}
