package history

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// snapshot writes thread t's history entry: the live thread and its queue
// ids, merged with the entry before and what this flush noted.
func (r *Recorder) snapshot(ctx context.Context, t policy.ThreadID, p *pending, now time.Time) error {
	var live *store.ThreadInfo
	err := r.call(ctx, func(ctx context.Context) error {
		info, err := r.threads.Thread(ctx, t, now)
		if err == nil {
			live = &info
		}
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var queued []QueueRef
	if err := r.call(ctx, func(ctx context.Context) (err error) {
		queued, err = r.h.Queued(ctx, t)
		return err
	}); err != nil {
		return err
	}
	var old *Entry
	err = r.call(ctx, func(ctx context.Context) error {
		e, err := r.h.Get(ctx, t)
		if err == nil {
			old = &e
		}
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	e := Merge(t, old, live, queued)
	e = p.into(e)
	if err := r.call(ctx, func(ctx context.Context) error {
		return r.h.Save(ctx, e, r.cfg.History, r.cfg.MaxStorms)
	}); err != nil {
		return err
	}
	r.Stats.Saved.Add(1)
	return nil
}

// into completes e with what this flush noted: the first near miss and
// block, the lists, and what the store no longer has.
func (p *pending) into(e Entry) Entry {
	e.NearMissAt = earliest(e.NearMissAt, p.nearMiss)
	storm(&e, p.stormAt, string(p.rule))
	e.Lists = union(e.Lists, p.lists, maxRecordedLists)
	e.Audience = max(e.Audience, p.audience)
	e.FirstSeen = earliest(e.FirstSeen, p.first)
	if p.last.After(e.LastSeen) {
		e.LastSeen = p.last
	}
	if e.Subject == "" {
		e.Subject = cut(p.subject)
	}
	if e.Sender == "" {
		e.Sender = cut(p.sender)
	}
	return e
}

// Merge is thread t's history entry from the entry before (old, nil if
// none), the live thread (nil once the store forgot it) and its queue ids:
// the earliest first sight, near miss and storm, the larger counters, the
// union of senders (the live status wins), lists and queue ids, each
// bounded as Store says.
func Merge(t policy.ThreadID, old *Entry, live *store.ThreadInfo, queued []QueueRef) Entry {
	e := Entry{Thread: t}
	if old != nil {
		e = *old
		e.Thread = t
		e.Senders = maps.Clone(old.Senders)
		e.Lists = slices.Clone(old.Lists)
		e.Queued = slices.Clone(old.Queued)
	}
	if live != nil {
		if live.Subject != "" {
			e.Subject = cut(live.Subject)
		}
		if live.Sender != "" {
			e.Sender = cut(live.Sender)
		}
		e.Audience = max(e.Audience, live.Audience)
		e.FirstSeen = earliest(e.FirstSeen, live.FirstSeen)
		if live.LastSeen.After(e.LastSeen) {
			e.LastSeen = live.LastSeen
		}
		storm(&e, live.StormAt, live.StormRule)
		e.Accepted = max(e.Accepted, live.Accepted)
		e.Refused = max(e.Refused, live.Refused)
		e.Allowed = max(e.Allowed, live.Allowed)
		if e.Senders == nil && len(live.Senders) > 0 {
			e.Senders = map[string]string{}
		}
		for _, s := range slices.Sorted(maps.Keys(live.Senders)) {
			s2 := cut(s)
			if _, ok := e.Senders[s2]; ok || len(e.Senders) < MaxSenders {
				e.Senders[s2] = live.Senders[s]
			}
		}
	}
	e.Queued = unionRefs(e.Queued, queued)
	return e
}

// unionRefs is a then b's refs not in a (by node and queue id), oldest
// first, at most MaxQueueRefs: the first ones are kept.
func unionRefs(a, b []QueueRef) []QueueRef {
	type key struct{ node, id string }
	seen := make(map[key]bool, len(a)+len(b))
	out := make([]QueueRef, 0, len(a)+len(b))
	for _, r := range slices.Concat(a, b) {
		k := key{r.Node, r.ID}
		if !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(x, y QueueRef) int { return x.Time.Compare(y.Time) })
	if len(out) > MaxQueueRefs {
		out = out[:MaxQueueRefs]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// union is a then b's strings not in a, at most n.
func union(a, b []string, n int) []string {
	for _, s := range b {
		if len(a) >= n {
			break
		}
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

// storm sets e's storm to at (rule) if it is the first block on record:
// the first limit crossing (the store's StormAt), or, when an operator
// blocked the thread first or the store forgot it, the first refusal.
func storm(e *Entry, at time.Time, rule string) {
	if !at.IsZero() && (e.StormAt.IsZero() || at.Before(e.StormAt)) {
		e.StormAt, e.StormRule = at, rule
	}
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// cut bounds a subject or sender to TextMax runes.
func cut(s string) string {
	if r := []rune(s); len(r) > TextMax {
		return string(r[:TextMax])
	}
	return s
}
