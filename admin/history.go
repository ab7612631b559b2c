package admin

import (
	"context"
	"errors"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// History kinds of a StormView.
const (
	KindStorm    = "storm"     // the thread crossed a limit
	KindNearMiss = "near_miss" // it reached report.near_miss of a limit, never crossed
)

// StormView is one storm or near miss from the history (store.History),
// completed with the thread's live record while the store still has it:
// what `stormguard storms --since`, the report page and its CSV show.
type StormView struct {
	Thread         string     `json:"thread"`
	Kind           string     `json:"kind"` // KindStorm or KindNearMiss
	Subject        string     `json:"subject"`
	OriginalSender string     `json:"original_sender"`
	Lists          []string   `json:"lists,omitempty"`
	Audience       int        `json:"audience"`
	FirstSeen      time.Time  `json:"first_seen"`
	LastSeen       time.Time  `json:"last_seen"`
	StormAt        *time.Time `json:"storm_at,omitempty"` // first block
	StormRule      string     `json:"storm_rule,omitempty"`
	NearMissAt     *time.Time `json:"near_miss_at,omitempty"`
	Accepted       int        `json:"accepted"`
	Refused        int        `json:"refused"`
	Allowed        int        `json:"allowed"`
	// Saved is the deliveries the refusals saved: Audience × Refused.
	Saved int64 `json:"saved"`
	// State is the live thread's (ThreadView.State) while the store has
	// it, "" once only the history is left.
	State   string           `json:"state,omitempty"`
	Senders []SenderView     `json:"senders,omitempty"`
	Queued  []store.QueueRef `json:"queued,omitempty"`
}

// HistoryAPI is the history part of the operator's API: both Direct and
// Client have it.
type HistoryAPI interface {
	// Storms lists the storms (and, with nearMisses, the near misses)
	// whose last activity is at or after since, the most recent first, at
	// most limit (0: store.MaxHistoryLimit).
	Storms(ctx context.Context, since time.Time, nearMisses bool, limit int) ([]StormView, error)
	// Storm reports one thread's history entry with its senders and queue
	// ids, completed from the live record; an error naming the thread if
	// neither knows it.
	Storm(ctx context.Context, t policy.ThreadID) (StormView, error)
	// Queued lists the queue ids stored for thread t, live and in its
	// history entry, each once, oldest first.
	Queued(ctx context.Context, t policy.ThreadID) ([]store.QueueRef, error)
}

// errNoHistory: the backend offers no history (never for the two stores
// stormguard has; a guard for a store.Store that is not a store.History).
var errNoHistory = errors.New("admin: this store keeps no history")
