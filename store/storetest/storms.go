package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// testStorms: storms finds every thread that stormed or is overridden
// however many quiet threads were seen after them (the listing of recent
// threads, bounded by store.MaxListLimit, no longer holds them), and no
// quiet one.
func testStorms(t *testing.T, s Store) {
	base, l := time.Now(), limits(1, 0)
	crossed, blocked, allowed := NewThread(), NewThread(), NewThread()
	record(t, s, reply(crossed, base, 3000, l))
	if got := record(t, s, reply(crossed, base.Add(time.Millisecond), 3000, l)); got.Status != policy.StatusCrossed {
		t.Fatalf("second reply: %+v, want crossed", got)
	}
	record(t, s, reply(blocked, base, 3000, l))
	setOverride(t, s, blocked, policy.OverrideBlock, time.Hour)
	record(t, s, reply(allowed, base, 3000, l))
	setOverride(t, s, allowed, policy.OverrideAllow, 0)

	const quiet = store.MaxListLimit + 10
	for i := range quiet {
		record(t, s, reply(NewThread(), base.Add(time.Second+time.Duration(i)*time.Millisecond), 3000, limits(10, 0)))
	}
	now := base.Add(time.Minute)

	recent := threads(t, s, now, 10*store.MaxListLimit)
	if len(recent) != store.MaxListLimit {
		t.Errorf("Threads(%d) listed %d threads, want the cap %d", 10*store.MaxListLimit, len(recent), store.MaxListLimit)
	}
	if slices.Contains(ids(recent), crossed) {
		t.Fatalf("the recent listing still holds %s: the test does not test storms", crossed)
	}

	got, err := s.Storms(ctx(t), now, 0)
	if err != nil {
		t.Fatalf("Storms: %v", err)
	}
	if w := []policy.ThreadID{crossed, blocked, allowed}; !sameSet(ids(got), w) {
		t.Fatalf("Storms = %q, want %q (behind %d quiet threads)", ids(got), w, quiet)
	}
	for _, x := range got {
		if !x.IsStorm() {
			t.Errorf("Storms listed a quiet thread: %+v", x)
		}
	}
	if lim, err := s.Storms(ctx(t), now, 1); err != nil || len(lim) != 1 {
		t.Errorf("Storms(limit 1) = %q, %v, want one thread", ids(lim), err)
	}

	// A reset thread is quiet again: storms no longer lists it.
	if err := s.Reset(ctx(t), crossed); err != nil {
		t.Fatal(err)
	}
	got, err = s.Storms(ctx(t), now, 0)
	if err != nil {
		t.Fatalf("Storms: %v", err)
	}
	if slices.Contains(ids(got), crossed) {
		t.Errorf("Storms after reset = %q, still holds %s", ids(got), crossed)
	}
}

func sameSet(a, b []policy.ThreadID) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
