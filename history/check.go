package history

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Checks and cleaning both stores apply, so that what one keeps and
// returns the other does too. Text is kept as the
// sender wrote it, HTML, CR/LF and terminal escapes included: escaping is
// the job of whoever displays it. It is only bounded, and made valid UTF-8
// the way encoding/json does (each invalid byte becomes U+FFFD), so that
// the memory history returns what a JSON round trip through Redis returns.

// maxLists bounds the list addresses an entry keeps.
const maxLists = 50

// checkThread refuses a thread id that cannot be part of a key.
func checkThread(t policy.ThreadID) error {
	if err := store.CheckID(string(t)); err != nil {
		return fmt.Errorf("%w: thread %q: %w", ErrInvalid, t, err)
	}
	return nil
}

// checkGet validates a lookup's thread id and context.
func checkGet(ctx context.Context, t policy.ThreadID) error {
	if err := checkThread(t); err != nil {
		return err
	}
	return ctx.Err()
}

// checkEntry validates Save's arguments.
func checkEntry(e Entry, keep time.Duration) error {
	if err := checkThread(e.Thread); err != nil {
		return err
	}
	if e.LastSeen.IsZero() {
		return fmt.Errorf("%w: no last seen", ErrInvalid)
	}
	if keep < time.Millisecond {
		return fmt.Errorf("%w: keep %v: want at least 1ms (report.history)", ErrInvalid, keep)
	}
	return nil
}

// checkQueued validates AddQueued's arguments.
func checkQueued(t policy.ThreadID, retention time.Duration) error {
	if err := checkThread(t); err != nil {
		return err
	}
	if retention < time.Millisecond {
		return fmt.Errorf("%w: retention %v: want at least 1ms (store.retention)", ErrInvalid, retention)
	}
	return nil
}

// listLimit is limit as List applies it.
func listLimit(limit int) int {
	if limit <= 0 {
		return MaxLimit
	}
	return min(limit, MaxLimit)
}

// cleanEntry returns e as the stores keep it: a copy sharing nothing with
// e, its text cut to TextMax runes, its lists, senders and queue ids
// bounded, its times in UTC to the millisecond (the index's unit).
func cleanEntry(e Entry) Entry {
	e.Subject, e.Sender, e.StormRule = cutText(e.Subject), cutText(e.Sender), cutText(e.StormRule)
	if e.Lists != nil {
		lists := make([]string, min(len(e.Lists), maxLists))
		for i := range lists {
			lists[i] = cutText(e.Lists[i])
		}
		e.Lists = lists
	}
	e.FirstSeen, e.LastSeen = msTime(e.FirstSeen), msTime(e.LastSeen)
	e.StormAt, e.NearMissAt = msTime(e.StormAt), msTime(e.NearMissAt)
	if e.Senders != nil {
		// Which senders stay when there are too many: the first in
		// order, so that both stores keep the same ones.
		names := make([]string, 0, len(e.Senders))
		for s := range e.Senders {
			names = append(names, s)
		}
		if len(names) > MaxSenders {
			slices.Sort(names)
			names = names[:MaxSenders]
		}
		senders := make(map[string]string, len(names))
		for _, s := range names {
			senders[cutText(s)] = cutText(e.Senders[s])
		}
		e.Senders = senders
	}
	if e.Queued != nil {
		e.Queued = cleanRefs(e.Queued, MaxQueueRefs)
	}
	return e
}

// ownedEntry is cleanEntry for an entry nothing else holds (one just
// decoded): within the bounds, it cleans e's own maps and slices in place
// rather than copying them, which a listing of a thousand entries feels.
func ownedEntry(e Entry) Entry {
	if len(e.Senders) > MaxSenders || len(e.Lists) > maxLists || len(e.Queued) > MaxQueueRefs {
		return cleanEntry(e)
	}
	for k := range e.Senders {
		if cutText(k) != k {
			return cleanEntry(e) // a key to change: the map is rebuilt
		}
	}
	for k, v := range e.Senders {
		if c := cutText(v); c != v {
			e.Senders[k] = c
		}
	}
	e.Subject, e.Sender, e.StormRule = cutText(e.Subject), cutText(e.Sender), cutText(e.StormRule)
	for i := range e.Lists {
		e.Lists[i] = cutText(e.Lists[i])
	}
	e.FirstSeen, e.LastSeen = msTime(e.FirstSeen), msTime(e.LastSeen)
	e.StormAt, e.NearMissAt = msTime(e.StormAt), msTime(e.NearMissAt)
	for i, r := range e.Queued {
		e.Queued[i] = cleanRef(r)
	}
	return e
}

// cleanRefs returns a cleaned copy of the first n refs.
func cleanRefs(refs []QueueRef, n int) []QueueRef {
	out := make([]QueueRef, min(len(refs), n))
	for i := range out {
		out[i] = cleanRef(refs[i])
	}
	return out
}

func cleanRef(r QueueRef) QueueRef {
	return QueueRef{
		Node: cutText(r.Node), ID: cutText(r.ID), Kind: cutText(r.Kind),
		Sender: cutText(r.Sender), Status: cutText(r.Status), Time: msTime(r.Time),
	}
}

// cloneEntry copies e's maps and slices (the stores hand out copies).
func cloneEntry(e Entry) Entry {
	e.Lists = slices.Clone(e.Lists)
	e.Queued = slices.Clone(e.Queued)
	if e.Senders != nil {
		m := make(map[string]string, len(e.Senders))
		for k, v := range e.Senders {
			m[k] = v
		}
		e.Senders = m
	}
	return e
}

// cutText makes s valid UTF-8 as encoding/json would and cuts it to
// TextMax runes.
func cutText(s string) string {
	if !utf8.ValidString(s) {
		var b strings.Builder
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteString(s[i : i+n])
			}
			i += n
		}
		s = b.String()
	}
	if len(s) <= TextMax || utf8.RuneCountInString(s) <= TextMax {
		return s
	}
	n := 0
	for i := range s {
		if n == TextMax {
			return s[:i]
		}
		n++
	}
	return s
}

// msTime is t in UTC to the millisecond, without a monotonic reading; the
// zero time stays zero.
func msTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).Truncate(time.Millisecond).UTC()
}
