package store

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stormguard/stormguard/policy"
)

// Checks and cleaning both stores apply to history (store.History), so
// that what one keeps and returns the other does too. Text is kept as the
// sender wrote it, HTML, CR/LF and terminal escapes included: escaping is
// the job of whoever displays it. It is only bounded, and made valid UTF-8
// the way encoding/json does (each invalid byte becomes U+FFFD), so that
// the memory store returns what a JSON round trip through Redis returns.

// maxHistoryLists bounds the list addresses an entry keeps.
const maxHistoryLists = 50

// checkHistory validates SaveHistory's arguments.
func checkHistory(e HistoryEntry, keep time.Duration) error {
	if err := checkID("thread", string(e.Thread)); err != nil {
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
	if err := checkID("thread", string(t)); err != nil {
		return err
	}
	if retention < time.Millisecond {
		return fmt.Errorf("%w: retention %v: want at least 1ms (store.retention)", ErrInvalid, retention)
	}
	return nil
}

// historyLimit is limit as History applies it.
func historyLimit(limit int) int {
	if limit <= 0 {
		return MaxHistoryLimit
	}
	return min(limit, MaxHistoryLimit)
}

// cleanEntry returns e as the stores keep it: a copy sharing nothing with
// e, its text cut to HistoryTextMax runes, its lists, senders and queue ids
// bounded, its times in UTC to the millisecond (the index's unit).
func cleanEntry(e HistoryEntry) HistoryEntry {
	e.Subject, e.Sender, e.StormRule = cutText(e.Subject), cutText(e.Sender), cutText(e.StormRule)
	if e.Lists != nil {
		lists := make([]string, min(len(e.Lists), maxHistoryLists))
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
		if len(names) > MaxHistorySenders {
			slices.Sort(names)
			names = names[:MaxHistorySenders]
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
func ownedEntry(e HistoryEntry) HistoryEntry {
	if len(e.Senders) > MaxHistorySenders || len(e.Lists) > maxHistoryLists || len(e.Queued) > MaxQueueRefs {
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
func cloneEntry(e HistoryEntry) HistoryEntry {
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
// HistoryTextMax runes.
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
	if len(s) <= HistoryTextMax || utf8.RuneCountInString(s) <= HistoryTextMax {
		return s
	}
	n := 0
	for i := range s {
		if n == HistoryTextMax {
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
