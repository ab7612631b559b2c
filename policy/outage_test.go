package policy

import (
	"testing"
	"time"
)

func TestOutageLimits(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	l := Limits{MaxReplies: 10, DeliveryBudget: 1_000_000, Window: time.Hour, BlockFor: 6 * time.Hour}
	at := func(ago time.Duration, t Tally) Seen { return Seen{At: now.Add(-ago), Tally: t} }
	counted := func(n int, d int64) Tally { return Tally{Status: StatusCounted, Count: n, Delivered: d} }
	type want struct {
		maxReplies int
		budget     int64
		answer     Tally // when the answer is known (ok false)
	}
	for _, tc := range []struct {
		name  string
		l     Limits
		seen  Seen
		nodes int
		want  want
	}{
		{"never seen, one node: the whole limits", l, Seen{}, 1, want{10, 1_000_000, Tally{}}},
		{"never seen, four nodes: a quarter each", l, Seen{}, 4, want{2, 250_000, Tally{}}},
		{"nodes 0 counts as 1", l, Seen{}, 0, want{10, 1_000_000, Tally{}}},
		{"6 of 10 held, 4 nodes: 1 each", l, at(time.Minute, counted(6, 6000)), 4, want{1, 248_500, Tally{}}},
		{"9 of 10 held, 4 nodes: the floor of 1 each", l, at(time.Minute, counted(9, 9000)), 4, want{1, 247_750, Tally{}}},
		{"9 of 10 held, 1 node: 1", l, at(time.Minute, counted(9, 9000)), 1, want{1, 991_000, Tally{}}},
		{"a duplicate's tally holds the window too", l, at(time.Minute, Tally{Status: StatusDuplicate, Count: 8, Delivered: 80}), 2, want{1, 499_960, Tally{}}},
		{"10 of 10 held: the next crosses", l, at(time.Minute, counted(10, 10000)), 4,
			want{answer: Tally{Status: StatusCrossed, Crossed: RuleMaxReplies, BlockTTL: 6 * time.Hour, Count: 10, Delivered: 10000}}},
		{"the budget used up: the next crosses it", l, at(time.Minute, counted(2, 1_000_000)), 4,
			want{answer: Tally{Status: StatusCrossed, Crossed: RuleDeliveryBudget, BlockTTL: 6 * time.Hour, Count: 2, Delivered: 1_000_000}}},
		{"seen before the window: nothing held", l, at(2*time.Hour, counted(10, 10000)), 2, want{5, 500_000, Tally{}}},
		{"blocked, block running: blocked", l, at(time.Hour, Tally{Status: StatusBlocked, BlockTTL: 5 * time.Hour}), 4,
			want{answer: Tally{Status: StatusBlocked, BlockTTL: 4 * time.Hour}}},
		{"crossed, block running: blocked", l, at(10*time.Minute, Tally{Status: StatusCrossed, Crossed: RuleMaxReplies, BlockTTL: 6 * time.Hour}), 4,
			want{answer: Tally{Status: StatusBlocked, BlockTTL: 6*time.Hour - 10*time.Minute}}},
		{"blocked, block over: counted afresh", l, at(7*time.Hour, Tally{Status: StatusBlocked, BlockTTL: 6 * time.Hour}), 2, want{5, 500_000, Tally{}}},
		{"allowed by an operator: allowed", l, at(time.Minute, Tally{Override: OverrideAllow, Status: StatusNoted}), 4,
			want{answer: Tally{Override: OverrideAllow, Status: StatusNoted}}},
		{"blocked by an operator: blocked", l, at(time.Minute, Tally{Override: OverrideBlock, Status: StatusNoted}), 4,
			want{answer: Tally{Override: OverrideBlock, Status: StatusNoted}}},
		{"a rule off stays off", Limits{MaxReplies: 10, Window: time.Hour, BlockFor: time.Hour}, at(time.Minute, counted(3, 3)), 2, want{3, 0, Tally{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			share, answer, ok := OutageLimits(tc.l, tc.seen, tc.nodes, now)
			if tc.want.answer != (Tally{}) {
				if ok || answer != tc.want.answer {
					t.Errorf("OutageLimits = %+v, %+v, %v; want the answer %+v", share, answer, ok, tc.want.answer)
				}
				return
			}
			if !ok || share.MaxReplies != tc.want.maxReplies || share.DeliveryBudget != tc.want.budget ||
				share.Window != tc.l.Window || share.BlockFor != tc.l.BlockFor {
				t.Errorf("OutageLimits = %+v, %+v, %v; want max_replies %d, delivery_budget %d", share, answer, ok, tc.want.maxReplies, tc.want.budget)
			}
		})
	}
}

// TestOutageLimitsBound: however the nodes share a thread's remaining
// replies, together they admit at most what was left plus nodes - 1 (the
// floor of one reply each), for every count held and number of nodes.
func TestOutageLimitsBound(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	l := Limits{MaxReplies: 10, Window: time.Hour, BlockFor: time.Hour}
	for held := 0; held <= 10; held++ {
		for nodes := 1; nodes <= 8; nodes++ {
			seen := Seen{At: now, Tally: Tally{Status: StatusCounted, Count: held}}
			if held == 0 {
				seen = Seen{}
			}
			share, _, ok := OutageLimits(l, seen, nodes, now)
			admitted := 0
			if ok {
				admitted = nodes * share.MaxReplies
			}
			left := 10 - held
			if admitted > left+nodes-1 || ok && left <= 0 {
				t.Errorf("held %d, %d nodes: together %d, more than the %d left + %d", held, nodes, admitted, left, nodes-1)
			}
			if left > 0 && !ok {
				t.Errorf("held %d, %d nodes: refused with %d left", held, nodes, left)
			}
		}
	}
}
