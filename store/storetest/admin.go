package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

func setOverride(t *testing.T, s store.Admin, th policy.ThreadID, o policy.Override, ttl time.Duration) {
	t.Helper()
	if err := s.SetOverride(ctx(t), th, o, ttl); err != nil {
		t.Fatalf("SetOverride(%s, %q, %v): %v", th, o, ttl, err)
	}
}

func testOverrideAllow(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(1, 0)
	record(t, s, reply(th, now, 3000, l))
	record(t, s, reply(th, now, 3000, l)) // crosses: blocked for 6h
	setOverride(t, s, th, policy.OverrideAllow, 0)
	for i := range 3 {
		got := record(t, s, reply(th, now, 3000, l))
		want(t, fmt.Sprintf("allowed reply %d", i), got, policy.StatusNoted, 1, 3000)
		if got.Override != policy.OverrideAllow || got.BlockTTL <= 0 {
			t.Errorf("allowed reply %d: override %q block %v, want allow and the block still there", i, got.Override, got.BlockTTL)
		}
	}
	ti := info(t, s, th, now)
	if ti.Allowed != 3 || ti.Accepted != 1 || ti.Refused != 1 || ti.InWindow != 1 {
		t.Errorf("allowed %d accepted %d refused %d in window %d, want 3 1 1 1", ti.Allowed, ti.Accepted, ti.Refused, ti.InWindow)
	}
	if ti.Override != policy.OverrideAllow || ti.OverrideTTL != 0 {
		t.Errorf("Override %q TTL %v, want allow without expiry", ti.Override, ti.OverrideTTL)
	}
	setOverride(t, s, th, policy.OverrideNone, 0)
	if got := record(t, s, reply(th, now, 3000, l)); got.Override != policy.OverrideNone || got.Status != policy.StatusBlocked {
		t.Errorf("after deleting the override: %+v, want blocked again", got)
	}
}

func testOverrideBlock(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(10, 0)
	setOverride(t, s, th, policy.OverrideBlock, 0)
	got := record(t, s, reply(th, now, 3000, l))
	want(t, "reply under block", got, policy.StatusNoted, 0, 0)
	if got.Override != policy.OverrideBlock {
		t.Errorf("reply under block: override %q", got.Override)
	}
	orig := reply(th, now, 3000, l)
	orig.Kind = policy.KindOriginal
	if got := record(t, s, orig); got.Override != policy.OverrideBlock || got.Status != policy.StatusNoted {
		t.Errorf("original under block: %+v", got)
	}
	ti := info(t, s, th, now)
	if ti.Refused != 1 || ti.Accepted != 0 || ti.InWindow != 0 || ti.Blocked {
		t.Errorf("refused %d accepted %d in window %d blocked %v, want 1 0 0 false", ti.Refused, ti.Accepted, ti.InWindow, ti.Blocked)
	}
}

func testOverrideGarbage(t *testing.T, s Store) {
	th := NewThread()
	if err := s.SetOverride(ctx(t), th, "maybe", 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SetOverride(maybe) = %v, want ErrInvalid", err)
	}
	if err := s.SetOverride(ctx(t), th, policy.OverrideAllow, -time.Second); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SetOverride with a negative ttl = %v, want ErrInvalid", err)
	}
	raw, ok := s.(RawOverrider)
	if !ok {
		t.Skip("the store under test cannot hold a raw override value")
	}
	now, l := time.Now(), limits(10, 0)
	for i, v := range []string{"ALLOW", "yes", " block", ""} {
		raw.SetRawOverride(t, th, v)
		got := record(t, s, reply(th, now, 3000, l))
		want(t, fmt.Sprintf("override %q", v), got, policy.StatusCounted, i+1, int64(i+1)*3000)
		if got.Override != policy.OverrideNone {
			t.Errorf("override %q read as %q", v, got.Override)
		}
		if ti := info(t, s, th, now); ti.Override != policy.OverrideNone {
			t.Errorf("Thread: override %q read as %q", v, ti.Override)
		}
	}
}

func testOverrideTTL(t *testing.T, s Store) {
	th, l := NewThread(), limits(10, 0)
	ttl := 500 * time.Millisecond
	setOverride(t, s, th, policy.OverrideAllow, ttl)
	if ti := info(t, s, th, time.Now()); ti.Override != policy.OverrideAllow || ti.OverrideTTL <= 0 || ti.OverrideTTL > ttl {
		t.Errorf("override %q TTL %v, want allow in (0, %v]", ti.Override, ti.OverrideTTL, ttl)
	}
	if got := record(t, s, reply(th, time.Now(), 3000, l)); got.Override != policy.OverrideAllow {
		t.Errorf("reply within the override's TTL: %+v", got)
	}
	eventually(t, "override expired", func() bool { return info(t, s, th, time.Now()).Override == policy.OverrideNone })
	want(t, "reply after the override", record(t, s, reply(th, time.Now(), 3000, l)), policy.StatusCounted, 1, 3000)
}

func testLinks(t *testing.T, s Store) {
	th1, th2, now := NewThread(), NewThread(), time.Now()
	k1, k2, k3 := NewKey(), NewKey(), NewKey()
	r := reply(th1, now, 3000, limits(10, 0))
	r.Links = []policy.Key{k1, k2}
	record(t, s, r)
	resolve := func(keys ...policy.Key) []policy.ThreadID {
		t.Helper()
		got, err := s.Resolve(ctx(t), keys)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		return got
	}
	if got, w := resolve(k1, k2, k3, ""), []policy.ThreadID{th1, th1, "", ""}; !slices.Equal(got, w) {
		t.Errorf("Resolve = %q, want %q", got, w)
	}
	r = reply(th2, now, 3000, limits(10, 0))
	r.Links = []policy.Key{k2, k3} // the first link wins: k2 stays in th1
	record(t, s, r)
	if got, w := resolve(k1, k2, k3), []policy.ThreadID{th1, th1, th2}; !slices.Equal(got, w) {
		t.Errorf("Resolve after a second writer = %q, want %q", got, w)
	}
	k3 = NewKey()
	if got := resolve(); len(got) != 0 {
		t.Errorf("Resolve() = %q, want nothing", got)
	}
	orig := reply(NewThread(), now, 3000, limits(10, 0))
	orig.Kind, orig.Links = policy.KindOriginal, []policy.Key{k3} // originals link too
	record(t, s, orig)
	if got := resolve(k3); got[0] != orig.Thread {
		t.Errorf("original's link = %q, want %q", got[0], orig.Thread)
	}
}

func testLinkTTL(t *testing.T, s Store) {
	k := NewKey()
	r := reply(NewThread(), time.Now(), 3000, limits(10, 0))
	r.Links, r.Retention = []policy.Key{k}, 200*time.Millisecond
	record(t, s, r)
	eventually(t, "link expired", func() bool {
		got, err := s.Resolve(ctx(t), []policy.Key{k})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		return got[0] == ""
	})
}

func testGlobals(t *testing.T, s Store) {
	c := ctx(t)
	g, err := s.Globals(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Lists) != 0 || len(g.Exempt) != 0 || len(g.Posters) != 0 || len(g.ListPolicies) != 0 || g.Mode != "" {
		t.Errorf("a new store's globals: %+v, want none", g)
	}
	for _, err := range []error{
		s.SetList(c, "All-Staff@Example.org", 850000),
		s.SetList(c, "team@example.org", 12),
		s.SetList(c, "gone@example.org", 40),
		s.SetList(c, "gone@example.org", 0),
		s.AddExempt(c, "Boss@Example.org"),
		s.AddExempt(c, "@helpdesk.example.org"),
		s.AddExempt(c, "boss@example.org"),
		s.AddPoster(c, "Comms@Example.org"),
		s.AddPoster(c, "@hr.example.org"),
		s.AddPoster(c, "jdoe"),
		s.AddPoster(c, "comms@example.org"),
		s.SetMode(c, policy.ModeMonitor),
		s.SetListPolicy(c, "All-Staff@Example.org", policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 3}, Posters: []string{"Comms@Example.org", "@hr.example.org"}}),
		s.SetListPolicy(c, "quiet@example.org", policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 0, policy.RuleDeliveryBudget: 0}, MinAudience: policy.Some(50), Action: policy.ConfigHold}),
		s.SetListPolicy(c, "gone@example.org", policy.ListPolicy{Action: policy.ConfigTempfail}),
		s.SetListPolicy(c, "gone@example.org", policy.ListPolicy{}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	g, err = s.Globals(c)
	if err != nil {
		t.Fatal(err)
	}
	if w := map[string]int{"all-staff@example.org": 850000, "team@example.org": 12}; !maps.Equal(g.Lists, w) {
		t.Errorf("Lists = %v, want %v", g.Lists, w)
	}
	if w := []string{"@helpdesk.example.org", "boss@example.org"}; !slices.Equal(g.Exempt, w) {
		t.Errorf("Exempt = %q, want %q", g.Exempt, w)
	}
	if w := []string{"@hr.example.org", "comms@example.org", "jdoe"}; !slices.Equal(g.Posters, w) {
		t.Errorf("Posters = %q, want %q", g.Posters, w)
	}
	if g.Mode != policy.ModeMonitor {
		t.Errorf("Mode = %q", g.Mode)
	}
	// RemovePoster: case does not matter, a second removal finds nothing.
	for i, want := range []bool{true, false} {
		if removed, err := s.RemovePoster(c, " JDoe "); err != nil || removed != want {
			t.Errorf("RemovePoster(jdoe) #%d = %v, %v; want %v", i+1, removed, err, want)
		}
	}
	if g, err = s.Globals(c); err != nil {
		t.Fatal(err)
	}
	if w := []string{"@hr.example.org", "comms@example.org"}; !slices.Equal(g.Posters, w) {
		t.Errorf("Posters after RemovePoster(jdoe) = %q, want %q", g.Posters, w)
	}
	gotLP := map[string]string{}
	for a, p := range g.ListPolicies {
		gotLP[a] = p.String()
	}
	if w := map[string]string{
		"all-staff@example.org": `{"max_replies":3,"posters":["comms@example.org","@hr.example.org"]}`,
		"quiet@example.org":     `{"min_audience":50,"max_replies":0,"delivery_budget":0,"action":"hold"}`,
	}; !maps.Equal(gotLP, w) {
		t.Errorf("ListPolicies = %q, want %q", gotLP, w)
	}
	if err := s.SetMode(c, ""); err != nil {
		t.Fatal(err)
	}
	if g, err = s.Globals(c); err != nil || g.Mode != "" {
		t.Errorf("Mode after deleting it = %q, %v", g.Mode, err)
	}
	for name, err := range map[string]error{
		"SetMode(bogus)":      s.SetMode(c, "bogus"),
		"SetList(\"\")":       s.SetList(c, " ", 5),
		"AddExempt(\"\")":     s.AddExempt(c, ""),
		"AddPoster(\"a b\")":  s.AddPoster(c, "a b"),
		"RemovePoster(\"\")":  func() error { _, err := s.RemovePoster(c, "\t"); return err }(),
		"SetListPolicy(\"\")": s.SetListPolicy(c, "", policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 3}}),
		"SetListPolicy(-1)":   s.SetListPolicy(c, "x@example.org", policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: -1}}),
		"SetListPolicy(drop)": s.SetListPolicy(c, "x@example.org", policy.ListPolicy{Action: "drop"}),
		"SetListPolicy(a b)":  s.SetListPolicy(c, "x@example.org", policy.ListPolicy{Posters: []string{"a b"}}),
	} {
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", name, err)
		}
	}
}

// testConcurrent: however many record at once, exactly the limit is let
// through (rspamd's ratelimit lets 101 or 102 of 100 through).
func testConcurrent(t *testing.T, s Store) {
	const writers = 64
	for round, l := range []policy.Limits{limits(10, 0), limits(10, 0), limits(0, 10*3000), limits(7, 0)} {
		th, now := NewThread(), time.Now()
		tallies := make([]policy.Tally, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				tl, err := s.Record(ctx(t), reply(th, now, 3000, l))
				if err != nil {
					t.Errorf("Record: %v", err) // not Fatal: this is not the test's goroutine
				}
				tallies[i] = tl
			})
		}
		wg.Wait()
		limit := l.MaxReplies
		if limit == 0 {
			limit = int(l.DeliveryBudget / 3000)
		}
		byStatus := map[policy.Status]int{}
		var counts []int
		for _, tl := range tallies {
			byStatus[tl.Status]++
			if tl.Status == policy.StatusCounted {
				counts = append(counts, tl.Count)
			}
		}
		w := map[policy.Status]int{policy.StatusCounted: limit, policy.StatusCrossed: 1, policy.StatusBlocked: writers - limit - 1}
		if !maps.Equal(byStatus, w) {
			t.Errorf("round %d: %v, want %v", round, byStatus, w)
		}
		slices.Sort(counts)
		for i, n := range counts {
			if n != i+1 {
				t.Errorf("round %d: counted replies saw counts %v, want 1..%d once each", round, counts, limit)
				break
			}
		}
		if ti := info(t, s, th, now); ti.Accepted != limit || ti.Refused != writers-limit || ti.InWindow != limit {
			t.Errorf("round %d: accepted %d refused %d in window %d", round, ti.Accepted, ti.Refused, ti.InWindow)
		}
	}
}
