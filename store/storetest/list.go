package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

func threads(t *testing.T, s Store, now time.Time, limit int) []store.ThreadInfo {
	t.Helper()
	got, err := s.Threads(ctx(t), now, limit)
	if err != nil {
		t.Fatalf("Threads(%d): %v", limit, err)
	}
	return got
}

func ids(infos []store.ThreadInfo) []policy.ThreadID {
	out := make([]policy.ThreadID, len(infos))
	for i, x := range infos {
		out[i] = x.Thread
	}
	return out
}

// testThreads: the listing holds every recorded thread, most recently seen
// first, reported as Thread reports it but for its senders (a listing
// carries none), and leaves out what has expired.
func testThreads(t *testing.T, s Store) {
	if got := threads(t, s, time.Now(), 0); len(got) != 0 {
		t.Fatalf("a new store lists %v", ids(got))
	}
	base, l := time.Now(), limits(1, 0)
	a, b, c := NewThread(), NewThread(), NewThread()
	orig := reply(a, base, 3000, l)
	orig.Kind, orig.Sender, orig.Subject = policy.KindOriginal, "ceo@example.org", "All hands"
	record(t, s, orig)
	record(t, s, reply(b, base.Add(time.Second), 3000, l))
	record(t, s, reply(c, base.Add(2*time.Second), 3000, l))
	record(t, s, reply(a, base.Add(3*time.Second), 3000, l)) // a: counted
	r := reply(a, base.Add(4*time.Second), 3000, l)          // a: crossed
	r.Sender = "late@example.org"
	record(t, s, r)
	setOverride(t, s, NewThread(), policy.OverrideBlock, 0) // no message: not listed

	now := base.Add(5 * time.Second)
	got := threads(t, s, now, 0)
	if w := []policy.ThreadID{a, c, b}; !slices.Equal(ids(got), w) {
		t.Fatalf("Threads = %q, want %q (most recent first)", ids(got), w)
	}
	if lim := threads(t, s, now, 2); !slices.Equal(ids(lim), []policy.ThreadID{a, c}) {
		t.Errorf("Threads(limit 2) = %q, want %q", ids(lim), []policy.ThreadID{a, c})
	}
	one := info(t, s, a, now)
	if got[0].Subject != "All hands" || got[0].Sender != "ceo@example.org" || !got[0].Blocked ||
		got[0].Accepted != 1 || got[0].Refused != 1 || len(got[0].Senders) != 0 {
		t.Errorf("listed %+v (a listing carries no senders)", got[0])
	}
	if one.Senders["late@example.org"] != "crossed" {
		t.Errorf("Thread's senders %v, want late@example.org crossed", one.Senders)
	}
	if got[0].StormAt != one.StormAt || got[0].LastSeen != one.LastSeen || got[0].InWindow != one.InWindow {
		t.Errorf("listed %+v, Thread says %+v", got[0], one)
	}

	// A short retention: the thread drops out of the listing once it expires.
	d := NewThread()
	r = reply(d, time.Now(), 3000, limits(10, 0))
	r.Retention, r.Limits.Window = 200*time.Millisecond, 200*time.Millisecond
	record(t, s, r)
	if !slices.Contains(ids(threads(t, s, time.Now(), 0)), d) {
		t.Fatalf("thread %s not listed right after its record", d)
	}
	eventually(t, "expired thread left the listing", func() bool {
		return !slices.Contains(ids(threads(t, s, time.Now(), 0)), d)
	})
}
