package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// limitCase is one reply arriving at a window: Count replies already
// counted, of audiences summing to Delivered.
type limitCase struct {
	w        policy.Window
	audience int
	l        policy.Limits
}

func (c limitCase) String() string {
	return fmt.Sprintf("window %d/%d, audience %d, max_replies %d, delivery_budget %d",
		c.w.Count, c.w.Delivered, c.audience, c.l.MaxReplies, c.l.DeliveryBudget)
}

// limitCases are the windows, audiences and limits on both sides of every
// boundary: each limit off, one below, at and one above what the window
// would hold with the reply counted.
func limitCases() []limitCase {
	windows := []policy.Window{
		{},
		{Count: 1, Delivered: 1},
		{Count: 1, Delivered: 850_000},
		{Count: 1, Delivered: 1 << 52}, // far beyond any list, still exact in Lua
		{Count: 3, Delivered: 3},
		{Count: 3, Delivered: 7_500},
	}
	var cases []limitCase
	for _, w := range windows {
		for _, audience := range []int{0, 1, 2500, 850_000} {
			held := w.Delivered + int64(audience)
			for _, maxReplies := range []int{0, w.Count, w.Count + 1, w.Count + 2} {
				for _, budget := range []int64{0, held - 1, held, held + 1} {
					if budget < 0 {
						continue // not a limit
					}
					cases = append(cases, limitCase{w, audience, policy.Limits{
						MaxReplies: maxReplies, DeliveryBudget: budget, Window: time.Hour, BlockFor: 6 * time.Hour,
					}})
				}
			}
		}
	}
	return cases
}

// testLimitTable drives every limitCase through Record, each on a thread
// of its own: the reply must cross exactly the rule policy.Crossed names
// (the memory store calls it; record.lua is its twin), and be counted
// otherwise.
func testLimitTable(t *testing.T, s Store) {
	cases := limitCases()
	now := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // a few threads at a time
	for _, c := range cases {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			th := NewThread()
			off := c.l
			off.MaxReplies, off.DeliveryBudget = 0, 0
			for i := range c.w.Count { // fill the window with the limits off
				aud := int(c.w.Delivered / int64(c.w.Count))
				if i == 0 {
					aud += int(c.w.Delivered % int64(c.w.Count))
				}
				if _, err := s.Record(ctx(t), reply(th, now, aud, off)); err != nil {
					t.Errorf("%s: filling the window: %v", c, err)
					return
				}
			}
			got, err := s.Record(ctx(t), reply(th, now, c.audience, c.l))
			if err != nil {
				t.Errorf("%s: %v", c, err)
				return
			}
			rule := policy.Crossed(c.l, c.w, c.audience)
			want := policy.Tally{Status: policy.StatusCrossed, Crossed: rule, Count: c.w.Count, Delivered: c.w.Delivered,
				BlockTTL: c.l.BlockFor, Thread: th}
			if rule == "" {
				want = policy.Tally{Status: policy.StatusCounted, Count: c.w.Count + 1,
					Delivered: c.w.Delivered + int64(c.audience), Thread: th}
			}
			if got != want {
				t.Errorf("%s:\n got %+v\nwant %+v (policy.Crossed: %q)", c, got, want, rule)
			}
		})
	}
	wg.Wait()
	t.Logf("%d cases", len(cases))
}
