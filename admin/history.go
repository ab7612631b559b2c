package admin

import (
	"context"
	"errors"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// History kinds of a StormView.
const (
	KindStorm    = "storm"     // the thread crossed a limit
	KindNearMiss = "near_miss" // it reached report.near_miss of a limit, never crossed
)

// StormView is one storm or near miss from the history (history.Store),
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
	State   string             `json:"state,omitempty"`
	Senders []SenderView       `json:"senders,omitempty"`
	Queued  []history.QueueRef `json:"queued,omitempty"`
}

// HistoryAPI is the history part of the operator's API: both Direct and
// Client have it.
type HistoryAPI interface {
	// Storms lists the storms (and, with nearMisses, the near misses)
	// whose last activity is at or after since, the most recent first, at
	// most limit (0: history.MaxLimit).
	Storms(ctx context.Context, since time.Time, nearMisses bool, limit int) ([]StormView, error)
	// Storm reports one thread's history entry with its senders and queue
	// ids, completed from the live record; an error naming the thread if
	// neither knows it.
	Storm(ctx context.Context, t policy.ThreadID) (StormView, error)
	// Queued lists the queue ids stored for thread t, live and in its
	// history entry, each once, oldest first.
	Queued(ctx context.Context, t policy.ThreadID) ([]history.QueueRef, error)
}

// CheckHistoryLimit checks a history listing's limit: 0 (every entry up
// to history.MaxLimit) to history.MaxLimit.
func CheckHistoryLimit(limit int) error {
	if limit < 0 || limit > history.MaxLimit {
		return badRequest("limit %d: want 1 to %d (the most a history listing returns)", limit, history.MaxLimit)
	}
	return nil
}

func (a *Direct) Storms(ctx context.Context, since time.Time, nearMisses bool, limit int) ([]StormView, error) {
	if err := CheckHistoryLimit(limit); err != nil {
		return nil, err
	}
	ask := limit
	if !nearMisses { // near misses are left out below: ask for all, cut after
		ask = history.MaxLimit
	}
	entries, err := a.h.List(ctx, since, ask)
	if err != nil {
		return nil, err
	}
	// The live state of every thread that stormed or is overridden, in
	// one listing rather than one lookup per entry.
	now := time.Now()
	infos, err := a.st.Storms(ctx, now, store.MaxListLimit)
	if err != nil {
		return nil, err
	}
	live := make(map[policy.ThreadID]*store.ThreadInfo, len(infos))
	for i := range infos {
		live[infos[i].Thread] = &infos[i]
	}
	views := []StormView{}
	for _, e := range entries {
		if !nearMisses && !e.IsStorm() {
			continue
		}
		if limit > 0 && len(views) == limit {
			break
		}
		views = append(views, stormViewOf(history.Merge(e.Thread, &e, live[e.Thread], nil), live[e.Thread], now, false))
	}
	return views, nil
}

func (a *Direct) Storm(ctx context.Context, t policy.ThreadID) (StormView, error) {
	e, live, queued, err := a.history(ctx, t)
	if err != nil {
		return StormView{}, err
	}
	return stormViewOf(history.Merge(t, e, live, queued), live, time.Now(), true), nil
}

func (a *Direct) Queued(ctx context.Context, t policy.ThreadID) ([]history.QueueRef, error) {
	e, live, queued, err := a.history(ctx, t)
	if err != nil {
		return nil, err
	}
	refs := history.Merge(t, e, nil, queued).Queued
	if refs == nil && live == nil && e == nil {
		return nil, notFound("thread %s: no queue ids and no history kept for it", t)
	}
	if refs == nil {
		refs = []history.QueueRef{}
	}
	return refs, nil
}

// history reads what the store keeps of thread t: its history entry and
// its live record (each nil if none) and its queue ids; an error naming
// the thread when it has none of them.
func (a *Direct) history(ctx context.Context, t policy.ThreadID) (*history.Entry, *store.ThreadInfo, []history.QueueRef, error) {
	var e *history.Entry
	switch got, err := a.h.Get(ctx, t); {
	case err == nil:
		e = &got
	case !errors.Is(err, history.ErrNotFound):
		return nil, nil, nil, err
	}
	var live *store.ThreadInfo
	switch info, err := a.st.Thread(ctx, t, time.Now()); {
	case err == nil:
		live = &info
	case !errors.Is(err, store.ErrNotFound):
		return nil, nil, nil, err
	}
	queued, err := a.h.Queued(ctx, t)
	if err != nil {
		return nil, nil, nil, err
	}
	if e == nil && live == nil && len(queued) == 0 {
		return nil, nil, nil, notFound("thread %s: unknown: not in the history of storms and near misses (report.history), no message of it recorded in the last %s (store.retention), or a typo", t, a.cfg.Retention)
	}
	return e, live, queued, nil
}

// stormViewOf is a merged entry as the operator sees it, with the live
// thread's state (nil: only the history is left) and, with detail, its
// senders and queue ids.
func stormViewOf(e history.Entry, live *store.ThreadInfo, now time.Time, detail bool) StormView {
	v := StormView{
		Thread: string(e.Thread), Kind: KindNearMiss, Subject: e.Subject, OriginalSender: e.Sender,
		Lists: e.Lists, Audience: e.Audience, FirstSeen: e.FirstSeen.UTC(), LastSeen: e.LastSeen.UTC(),
		StormAt: timePtr(e.StormAt), StormRule: e.StormRule, NearMissAt: timePtr(e.NearMissAt),
		Accepted: e.Accepted, Refused: e.Refused, Allowed: e.Allowed,
		Saved: int64(e.Audience) * int64(e.Refused),
	}
	if e.IsStorm() {
		v.Kind = KindStorm
	}
	if live != nil {
		v.State = viewOf(*live, now, false).State
	}
	if detail {
		v.Senders = senderViews(e.Senders)
		v.Queued = e.Queued
	}
	return v
}
