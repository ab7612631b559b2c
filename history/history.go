// Package history keeps what the report page, `stormguard storms --since`
// and `stormguard queue` need after a thread's live records
// (store.retention) are gone: every storm and near miss for
// report.history, and the MTA queue ids of the messages each node let
// through or held in a large-audience thread, so that an operator can
// trace and clear them.
//
// Two implementations share one contract, checked by history/historytest:
// Memory (one node) and Redis (all nodes of a site, on the store's Redis
// and under its key names, store.Keys). The Recorder writes the history
// off the mail path from the daemon's decisions.
//
// It must not decide verdicts (policy does), count replies or hold a
// thread's live state (store does), read configuration files (it takes
// plain structs), or block or slow mail: Recorder.Note never waits.
package history

import (
	"context"
	"errors"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// Store keeps the history. Every value is bounded: MaxQueueRefs per
// thread, MaxSenders senders per entry, TextMax runes of subject and
// sender, and the index keeps at most the max entries Save is given.
type Store interface {
	// AddQueued appends refs to thread t's queue ids and keeps them for
	// retention from now. At most MaxQueueRefs are kept per thread: the
	// first ones (the original comes first), later ones are dropped.
	AddQueued(ctx context.Context, t policy.ThreadID, refs []QueueRef, retention time.Duration) error
	// Queued returns thread t's queue ids, oldest first; none is not an error.
	Queued(ctx context.Context, t policy.ThreadID) ([]QueueRef, error)
	// Save writes e as thread e.Thread's entry (replacing the one before)
	// and keeps it for keep from e.LastSeen. The index keeps at most max
	// entries (the oldest LastSeen leaves first; max <= 0: no bound) and
	// drops those older than keep.
	Save(ctx context.Context, e Entry, keep time.Duration, max int) error
	// List lists the entries whose LastSeen is at or after since, the
	// most recent LastSeen first, at most limit (1 to MaxLimit; <= 0:
	// MaxLimit), as summaries: without Senders and Queued, which are most
	// of a storm's size (Get has them), so that the report page lists a
	// thousand storms quickly.
	List(ctx context.Context, since time.Time, limit int) ([]Entry, error)
	// Get returns thread t's entry; ErrNotFound if there is none.
	Get(ctx context.Context, t policy.ThreadID) (Entry, error)
}

// ErrNotFound is returned by Get for a thread without an entry.
var ErrNotFound = errors.New("history: not found")

// ErrInvalid is returned, wrapped, for arguments a Store refuses: a thread
// id that is not safe in a Redis key, an entry without a time, a keep or
// retention under a millisecond.
var ErrInvalid = errors.New("history: invalid argument")

// ErrData is returned, wrapped, by Get and Queued for a value in Redis that
// is not what Save and AddQueued write (an operator's mistake, or hostile
// data): a value of the wrong type, or an entry that is not JSON.
var ErrData = errors.New("history: bad data")

// Bounds of what a Store keeps.
const (
	MaxQueueRefs = 1000  // queue ids per thread
	MaxSenders   = 500   // reply senders per entry
	TextMax      = 300   // runes of a subject or sender kept
	MaxLimit     = 10000 // entries one List call returns at most
)

// Queue statuses of a QueueRef.
const (
	QueueAccepted = "accepted" // let through into the MTA's active queue
	QueueHeld     = "held"     // put on hold (milter quarantine): in the MTA's hold queue
)

// QueueRef is one message a node handed back to its MTA in a thread: the
// MTA's queue id ({i} macro) on that node.
type QueueRef struct {
	Node   string    `json:"node"`   // the node's name (config node; default the host name)
	ID     string    `json:"id"`     // the MTA's queue id
	Kind   string    `json:"kind"`   // policy.Kind: original or reply
	Sender string    `json:"sender"` // envelope sender
	Status string    `json:"status"` // QueueAccepted or QueueHeld
	Time   time.Time `json:"time"`
}

// Entry is one storm or near miss as kept for report.history: the
// thread's facts at its last update.
type Entry struct {
	Thread    policy.ThreadID `json:"thread"`
	Subject   string          `json:"subject"`
	Sender    string          `json:"original_sender"`
	Lists     []string        `json:"lists,omitempty"` // the registered lists it went to
	Audience  int             `json:"audience"`        // the largest audience of a message in it
	FirstSeen time.Time       `json:"first_seen"`
	LastSeen  time.Time       `json:"last_seen"`
	// StormAt is when the thread first crossed a limit (its first block),
	// StormRule the rule; zero for a near miss.
	StormAt   time.Time `json:"storm_at"`
	StormRule string    `json:"storm_rule,omitempty"`
	// NearMissAt is when it first reached report.near_miss of a limit.
	NearMissAt time.Time `json:"near_miss_at"`
	Accepted   int       `json:"accepted"` // replies counted
	Refused    int       `json:"refused"`  // replies refused (or held)
	Allowed    int       `json:"allowed"`  // replies let through by an operator's allow
	// Senders are the reply senders with the store's status of their
	// last message (store.ThreadInfo.Senders), at most MaxSenders.
	Senders map[string]string `json:"senders,omitempty"`
	// Queued are the queue ids of the messages let through or held, per
	// node, at most MaxQueueRefs.
	Queued []QueueRef `json:"queued,omitempty"`
}

// Summary is e without its Senders and Queued: what List lists.
func (e Entry) Summary() Entry {
	e.Senders, e.Queued = nil, nil
	return e
}

// IsStorm says the entry is a storm, not a near miss.
func (e Entry) IsStorm() bool { return !e.StormAt.IsZero() }
