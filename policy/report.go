package policy

import (
	"math/big"
	"strconv"
)

// What the history keeps (report.history): storms and near misses. This
// file is the one home of both rules; the report package applies them to
// the decisions it is told of.

// NearMiss reports whether a thread whose window holds count replies
// reaching delivered mailboxes has reached share (0 < share <= 1;
// report.near_miss) of a limit of l: of max_replies or of delivery_budget,
// a limit of 0 being off. Reaching means at least the share, rounded up to
// a whole reply or mailbox: with max_replies 10 and share 0.5, the 5th
// reply is a near miss, and so is every reply a limit allows once the
// share rounds up to the limit itself.
//
// share is taken as the decimal an operator writes (0.7, not the double
// nearest it, 0.6999…), and the threshold is computed exactly, so that 70 %
// of 10 is 7 and 10 % of 10 is 1 whatever the rounding of doubles, for
// every limit up to MaxLimit. A share outside (0, 1] reports false.
func NearMiss(l Limits, count int, delivered int64, share float64) bool {
	if !(share > 0 && share <= 1) { // also NaN
		return false
	}
	w := Window{Count: count, Delivered: delivered}
	for _, r := range LimitRules {
		if limit := r.Limit(l); limit > 0 && r.Held(w) >= shareOf(limit, share) {
			return true
		}
	}
	return false
}

// shareOf is ceil(share × limit) for 0 < share <= 1 and limit > 0, exact:
// at least 1, at most limit.
func shareOf(limit int64, share float64) int64 {
	var s big.Rat
	if _, ok := s.SetString(strconv.FormatFloat(share, 'g', -1, 64)); !ok {
		return limit // not reached: FormatFloat writes what SetString reads
	}
	n := new(big.Int).Mul(s.Num(), big.NewInt(limit))
	q, m := n.QuoRem(n, s.Denom(), new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}

// Notable reports whether a decision with rule r makes its thread worth a
// history entry: a storm (a limit crossed, the thread already blocked, an
// operator's block), an operator's allow, or, with nearMiss (NearMiss of
// the decision's window), a near miss.
func Notable(r Rule, nearMiss bool) bool {
	switch {
	case nearMiss, IsLimit(r):
		return true
	case r == RuleBlocked, r == RuleOverrideBlock, r == RuleOverrideAllow:
		return true
	}
	return false
}

// IsStormRule reports whether a decision with rule r means its thread
// stormed: it crossed a limit, was blocked, or an operator blocked it. An
// entry whose thread never crossed a limit but was blocked by an operator
// is kept as a storm with rule override_block.
func IsStormRule(r Rule) bool {
	return IsLimit(r) || r == RuleBlocked || r == RuleOverrideBlock
}
