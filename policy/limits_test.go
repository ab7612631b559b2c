package policy

import (
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestCrossed(t *testing.T) {
	lim := func(maxReplies int, budget int64) Limits {
		return Limits{MaxReplies: maxReplies, DeliveryBudget: budget}
	}
	tests := []struct {
		name     string
		l        Limits
		w        Window
		audience int
		want     Rule
	}{
		{"no limits", lim(0, 0), Window{Count: 1 << 20, Delivered: 1 << 40}, 850_000, ""},
		{"empty window, first reply", lim(1, 1000), Window{}, 1000, ""},
		{"max: the Nth reply passes", lim(3, 0), Window{Count: 2, Delivered: 6000}, 3000, ""},
		{"max: N+1 crosses", lim(3, 0), Window{Count: 3, Delivered: 9000}, 3000, RuleMaxReplies},
		{"max 1: the second crosses", lim(1, 0), Window{Count: 1, Delivered: 1}, 1, RuleMaxReplies},
		{"max: a window already over the limit", lim(2, 0), Window{Count: 5}, 1, RuleMaxReplies},
		{"max 0 disables the count", lim(0, 0), Window{Count: math.MaxInt32}, 1, ""},
		{"budget reached exactly passes", lim(0, 1000), Window{Count: 1, Delivered: 500}, 500, ""},
		{"budget passed by one crosses", lim(0, 1000), Window{Count: 2, Delivered: 1000}, 1, RuleDeliveryBudget},
		{"budget crossed by one big reply", lim(0, 1_000_000), Window{}, 1_000_001, RuleDeliveryBudget},
		{"NHS: the second reply-all to 850,000", lim(10, 1_000_000), Window{Count: 1, Delivered: 850_000}, 850_000, RuleDeliveryBudget},
		{"budget: an audience of 0 never crosses a window within it", lim(0, 1000), Window{Count: 9, Delivered: 1000}, 0, ""},
		{"budget: a window already over it", lim(0, 1000), Window{Count: 9, Delivered: 1001}, 0, RuleDeliveryBudget},
		{"budget 0 disables the sum", lim(0, 0), Window{Delivered: math.MaxInt64}, math.MaxInt, ""},
		{"both crossed: max_replies first", lim(2, 1000), Window{Count: 2, Delivered: 1000}, 500, RuleMaxReplies},
		{"only the budget crossed", lim(3, 1000), Window{Count: 2, Delivered: 1000}, 500, RuleDeliveryBudget},
		{"only the count crossed", lim(2, 1000), Window{Count: 2, Delivered: 0}, 1, RuleMaxReplies},
		{"limits at 2^53", lim(MaxLimit, MaxLimit), Window{Count: MaxLimit - 1, Delivered: MaxLimit - 1}, 1, ""},
		{"limits at 2^53, one more", lim(MaxLimit, MaxLimit), Window{Count: MaxLimit - 1, Delivered: MaxLimit}, 1, RuleDeliveryBudget},
		{"overflow: delivered at MaxInt64", lim(0, MaxLimit), Window{Delivered: math.MaxInt64}, 1, RuleDeliveryBudget},
		{"overflow: MaxInt64 + MaxInt passes MaxInt64", lim(0, math.MaxInt64), Window{Delivered: math.MaxInt64}, math.MaxInt, RuleDeliveryBudget},
		{"overflow: MaxInt64 + 0 reaches MaxInt64", lim(0, math.MaxInt64), Window{Delivered: math.MaxInt64}, 0, ""},
		{"overflow: count at MaxInt, max MaxInt", lim(math.MaxInt, 0), Window{Count: math.MaxInt}, 1, RuleMaxReplies},
		{"overflow: count MaxInt-1, max MaxInt", lim(math.MaxInt, 0), Window{Count: math.MaxInt - 1}, 1, ""},
		{"overflow: count at MaxInt, smaller max", lim(MaxLimit, 0), Window{Count: math.MaxInt}, 1, RuleMaxReplies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Crossed(tt.l, tt.w, tt.audience); got != tt.want {
				t.Errorf("Crossed(%+v, %+v, %d) = %q, want %q", tt.l, tt.w, tt.audience, got, tt.want)
			}
		})
	}
}

// TestCrossedExhaustive compares Crossed, on every small window, audience
// and pair of limits, with the rule written out in arbitrary precision: a
// limit of 0 is off; otherwise count+1 > max_replies crosses, then
// delivered+audience > delivery_budget.
func TestCrossedExhaustive(t *testing.T) {
	spec := func(l Limits, w Window, audience int) Rule {
		gt := func(a, b, limit int64) bool {
			sum := new(big.Int).Add(big.NewInt(a), big.NewInt(b))
			return limit > 0 && sum.Cmp(big.NewInt(limit)) > 0
		}
		switch {
		case gt(int64(w.Count), 1, int64(l.MaxReplies)):
			return RuleMaxReplies
		case gt(w.Delivered, int64(audience), l.DeliveryBudget):
			return RuleDeliveryBudget
		}
		return ""
	}
	n := 0
	for count := range 7 {
		for delivered := range int64(13) {
			for audience := range 7 {
				for maxReplies := range 8 {
					for budget := range int64(16) {
						l, w := Limits{MaxReplies: maxReplies, DeliveryBudget: budget}, Window{Count: count, Delivered: delivered}
						if got, want := Crossed(l, w, audience), spec(l, w, audience); got != want {
							t.Fatalf("Crossed(%+v, %+v, %d) = %q, want %q", l, w, audience, got, want)
						}
						n++
					}
				}
			}
		}
	}
	edges := []int64{0, 1, MaxLimit - 1, MaxLimit, MaxLimit + 1, math.MaxInt64 - 1, math.MaxInt64}
	for _, count := range edges {
		for _, delivered := range edges {
			for _, audience := range edges {
				for _, limit := range edges {
					l := Limits{MaxReplies: int(limit), DeliveryBudget: limit}
					w := Window{Count: int(count), Delivered: delivered}
					if got, want := Crossed(l, w, int(audience)), spec(l, w, int(audience)); got != want {
						t.Fatalf("Crossed(%+v, %+v, %d) = %q, want %q", l, w, audience, got, want)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d cases", n)
}

// TestLimitRules checks the declaration the rest of the code ranges over.
func TestLimitRules(t *testing.T) {
	if len(LimitRules) == 0 {
		t.Fatal("no limit rules")
	}
	seen := map[string]bool{}
	for _, r := range LimitRules {
		if r.Rule == "" || r.Key == "" || r.Unit == "" || r.Limit == nil || r.Held == nil || r.Adds == nil {
			t.Errorf("%q: incomplete %+v", r.Rule, r)
		}
		// The rule a log line names is the setting that decided it.
		if r.Key != string(r.Rule) {
			t.Errorf("%q: config key %q, want the rule's name", r.Rule, r.Key)
		}
		if !strings.Contains(r.Help, "0 disables") {
			t.Errorf("%q: help %q does not say that 0 disables the rule", r.Rule, r.Help)
		}
		if seen[r.Key] {
			t.Errorf("%q declared twice", r.Key)
		}
		seen[r.Key] = true
		if !IsLimit(r.Rule) {
			t.Errorf("IsLimit(%q) = false", r.Rule)
		}
		if r.Limit(Limits{}) != 0 {
			t.Errorf("%q: the zero Limits do not disable it", r.Rule)
		}
	}
	for _, r := range []Rule{RuleBlocked, RuleCounted, RuleOverrideBlock, RuleAutoReply, ""} {
		if IsLimit(r) {
			t.Errorf("IsLimit(%q) = true", r)
		}
	}
	// Each rule reads its own limit: with only max_replies set, only
	// max_replies can be crossed, and the other way round.
	w := Window{Count: 100, Delivered: 100}
	if got := Crossed(Limits{MaxReplies: 1}, w, 100); got != RuleMaxReplies {
		t.Errorf("max_replies alone: %q", got)
	}
	if got := Crossed(Limits{DeliveryBudget: 1}, w, 100); got != RuleDeliveryBudget {
		t.Errorf("delivery_budget alone: %q", got)
	}
}

func ExampleCrossed() {
	l := Limits{MaxReplies: 10, DeliveryBudget: 1_000_000}
	// The second reply-all to an 850,000-mailbox list.
	fmt.Println(Crossed(l, Window{Count: 1, Delivered: 850_000}, 850_000))
	// The tenth reply to a 3,000-mailbox list.
	fmt.Printf("%q\n", Crossed(l, Window{Count: 9, Delivered: 27_000}, 3000))
	for _, r := range LimitRules {
		fmt.Printf("policy.%s: %s\n", r.Key, r.Help)
	}
	// Output:
	// delivery_budget
	// ""
	// policy.max_replies: large-audience replies allowed per thread per window (0 disables the rule)
	// policy.delivery_budget: sum of audiences of the replies allowed per thread per window (0 disables the rule)
}
