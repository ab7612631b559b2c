package policy

import (
	"math"
	"testing"
)

func TestNearMiss(t *testing.T) {
	lim := func(maxReplies int, budget int64) Limits {
		return Limits{MaxReplies: maxReplies, DeliveryBudget: budget}
	}
	tests := []struct {
		name      string
		l         Limits
		count     int
		delivered int64
		share     float64
		want      bool
	}{
		{"no limits: never", lim(0, 0), math.MaxInt32, math.MaxInt64, 0.5, false},
		{"nothing counted", lim(10, 1000), 0, 0, 0.5, false},
		{"max 10, half: 4 is not", lim(10, 0), 4, 0, 0.5, false},
		{"max 10, half: 5 is", lim(10, 0), 5, 0, 0.5, true},
		{"max 10, half: 10 (the limit) is", lim(10, 0), 10, 0, 0.5, true},
		{"max 10, half: over the limit is", lim(10, 0), 11, 0, 0.5, true},
		{"max 5, half rounds up: 2 is not", lim(5, 0), 2, 0, 0.5, false},
		{"max 5, half rounds up: 3 is", lim(5, 0), 3, 0, 0.5, true},
		{"max 1, half: the first reply is", lim(1, 0), 1, 0, 0.5, true},
		{"share 1: one below the limit is not", lim(10, 0), 9, 0, 1, false},
		{"share 1: the limit is", lim(10, 0), 10, 0, 1, true},
		{"share 0.7 of 10 is 7, not 8 (0.7×10 = 7.000000000000001 in doubles)", lim(10, 0), 7, 0, 0.7, true},
		{"share 0.7 of 10: 6 is not", lim(10, 0), 6, 0, 0.7, false},
		{"share 0.1 of 10 is 1, not 2 (0.1 is 0.1000…0555 as a double)", lim(10, 0), 1, 0, 0.1, true},
		{"share 0.3 of 10: 2 is not", lim(10, 0), 2, 0, 0.3, false},
		{"tiny share: the first reply is", lim(1000, 0), 1, 0, 1e-9, true},
		{"tiny share: none is not", lim(1000, 0), 0, 0, 1e-9, false},
		{"budget: half of 1,000,000 reached", lim(0, 1_000_000), 1, 500_000, 0.5, true},
		{"budget: one short of half", lim(0, 1_000_000), 1, 499_999, 0.5, false},
		{"budget only, count high but max off", lim(0, 1000), 1 << 20, 10, 0.5, false},
		{"either limit: the budget's share reached, the count's not", lim(10, 1000), 1, 600, 0.5, true},
		{"either limit: the count's share reached, the budget's not", lim(10, 1000), 6, 10, 0.5, true},
		{"max 2^53, half: 2^52 is", lim(MaxLimit, 0), 1 << 52, 0, 0.5, true},
		{"max 2^53, half: 2^52-1 is not", lim(MaxLimit, 0), 1<<52 - 1, 0, 0.5, false},
		{"budget 2^53, share 1: 2^53-1 is not", lim(0, MaxLimit), 0, MaxLimit - 1, 1, false},
		{"budget 2^53, share 1: 2^53 is", lim(0, MaxLimit), 0, MaxLimit, 1, true},
		{"budget 2^53, max int64 delivered: no overflow", lim(0, MaxLimit), 0, math.MaxInt64, 0.999999, true},
		{"budget 2^53, share 0.3: one short", lim(0, MaxLimit), 0, 2702159776422297, 0.3, false}, // 0.3 × 2^53 = 2702159776422297.6
		{"budget 2^53, share 0.3: reached, exact", lim(0, MaxLimit), 0, 2702159776422298, 0.3, true},
		{"negative count and delivered never reach", lim(10, 1000), -5, -1000, 0.5, false},
		{"share 0: off", lim(10, 0), 10, 0, 0, false},
		{"share above 1: off", lim(10, 0), 10, 0, 1.01, false},
		{"share negative: off", lim(10, 0), 10, 0, -0.5, false},
		{"share NaN: off", lim(10, 0), 10, 0, math.NaN(), false},
		{"share +Inf: off", lim(10, 0), 10, 0, math.Inf(1), false},
		{"smallest positive share: the first reply", lim(10, 0), 1, 0, math.SmallestNonzeroFloat64, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NearMiss(tc.l, tc.count, tc.delivered, tc.share); got != tc.want {
				t.Errorf("NearMiss(%+v, %d, %d, %v) = %v, want %v", tc.l, tc.count, tc.delivered, tc.share, got, tc.want)
			}
		})
	}
}

// TestNearMissPercent checks every whole percentage against integer
// arithmetic: p % of limit is reached at ceil(p × limit / 100).
func TestNearMissPercent(t *testing.T) {
	for p := 1; p <= 100; p++ {
		share := float64(p) / 100
		for limit := 1; limit <= 250; limit++ {
			at := (p*limit + 99) / 100
			l := Limits{MaxReplies: limit}
			if !NearMiss(l, at, 0, share) {
				t.Fatalf("%d%% of max_replies %d: %d replies should be a near miss", p, limit, at)
			}
			if NearMiss(l, at-1, 0, share) {
				t.Fatalf("%d%% of max_replies %d: %d replies should not be a near miss", p, limit, at-1)
			}
			b := Limits{DeliveryBudget: int64(limit)}
			if !NearMiss(b, 1, int64(at), share) || NearMiss(b, 1, int64(at-1), share) {
				t.Fatalf("%d%% of delivery_budget %d: reached at %d mailboxes, not before", p, limit, at)
			}
		}
	}
}

func TestNotable(t *testing.T) {
	tests := []struct {
		r         Rule
		nearMiss  bool
		notable   bool
		stormRule bool
	}{
		{RuleMaxReplies, false, true, true},
		{RuleDeliveryBudget, false, true, true},
		{RuleBlocked, false, true, true},
		{RuleOverrideBlock, false, true, true},
		{RuleOverrideAllow, false, true, false},
		{RuleCounted, true, true, false},
		{RuleCounted, false, false, false},
		{RuleDuplicate, false, false, false},
		{RuleDuplicate, true, true, false},
		{RuleOriginal, false, false, false},
		{RuleAutoReply, false, false, false},
		{RuleStoreError, false, false, false},
		{RuleSmallAudience, false, false, false},
		{RuleGate, false, false, false},
		{RuleExempt, false, false, false},
		{RuleModeOff, false, false, false},
	}
	for _, tc := range tests {
		if got := Notable(tc.r, tc.nearMiss); got != tc.notable {
			t.Errorf("Notable(%s, %v) = %v, want %v", tc.r, tc.nearMiss, got, tc.notable)
		}
		if got := IsStormRule(tc.r); got != tc.stormRule {
			t.Errorf("IsStormRule(%s) = %v, want %v", tc.r, got, tc.stormRule)
		}
	}
}
