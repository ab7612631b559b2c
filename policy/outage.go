package policy

import "time"

// Counting through an outage of the shared store. Each node then counts
// alone, in its own memory store; left at that, N nodes would let through
// N times max_replies. Instead a node counts a thread under its share of
// what the thread had left when the store last answered for it: with N
// nodes, each admits at most (limit - held) / N of it, and at least one
// unit (one reply, one mailbox), so that a storm that never reached the
// store is not refused outright. Across N nodes the overshoot is then at
// most N - 1 units of each limit, not N times the limit. A thread the
// store last reported blocked stays blocked on every node until its block
// ends, and an operator's override holds.

// Seen is what the shared store last answered for one thread on this
// node: its Tally at a time.
type Seen struct {
	At    time.Time
	Tally Tally
}

// OutageLimits returns the limits this node, one of nodes sharing the
// store (at least 1), counts a thread under while the store cannot be
// reached, given what the store last answered for it (seen; the zero Seen
// when it never did): each limit rule's share of what was left of it in
// the window. When the answer is known without counting (the thread is
// blocked or overridden, or a limit is used up) it returns that answer
// as a Tally and ok false: the message is decided on it, nothing counted.
func OutageLimits(l Limits, seen Seen, nodes int, now time.Time) (share Limits, answer Tally, ok bool) {
	nodes = max(nodes, 1)
	t := seen.Tally
	if !seen.At.IsZero() {
		switch {
		case t.Override != OverrideNone:
			return l, Tally{Override: t.Override, Status: StatusNoted, Thread: t.Thread}, false
		case (t.Status == StatusBlocked || t.Status == StatusCrossed) && seen.At.Add(t.BlockTTL).After(now):
			return l, Tally{Status: StatusBlocked, BlockTTL: seen.At.Add(t.BlockTTL).Sub(now), Thread: t.Thread}, false
		}
	}
	var held Window
	if !seen.At.IsZero() && now.Sub(seen.At) < l.Window && (t.Status == StatusCounted || t.Status == StatusDuplicate) {
		held = Window{Count: t.Count, Delivered: t.Delivered}
	}
	share = l
	for _, r := range LimitRules {
		limit := r.Limit(l)
		if limit == 0 { // off stays off
			continue
		}
		left := limit - r.Held(held)
		if left <= 0 {
			return l, Tally{Status: StatusCrossed, Crossed: r.Rule, BlockTTL: l.BlockFor, Count: held.Count, Delivered: held.Delivered, Thread: t.Thread}, false
		}
		share = r.With(share, max(1, left/int64(nodes)))
	}
	return share, Tally{}, true
}
