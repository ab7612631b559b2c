// Package historytest is the one conformance suite every history.Store
// runs: the memory one always, Redis (and Redis Cluster) against real
// servers the tests start themselves. Two stores that pass it keep, list,
// bound and expire storms, near misses and queue ids exactly alike.
//
// Times are real: each test starts from time.Now(), so that Redis' own
// TTLs and the entries' times agree, and expiries are awaited by polling
// with a bounded deadline.
package historytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store/storetest"
)

// Run runs the suite. newStore returns a fresh, empty history for one
// test (closing what it opened with t.Cleanup). Tests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) history.Store) {
	for _, tc := range []struct {
		name string
		f    func(t *testing.T, s history.Store)
	}{
		{"Queued", testQueued},
		{"Replace", testReplace},
		{"Listing", testListing},
		{"Max", testMax},
		{"Expiry", testExpiry},
		{"Bounds", testBounds},
		{"Invalid", testInvalid},
		{"CanceledContext", testCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(t, newStore(t))
		})
	}
}

// pollTimeout bounds every wait for a TTL to run out.
const pollTimeout = 5 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond until it holds, failing after pollTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v", what, pollTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling a TTL, bounded above
	}
}

// NewThread returns a random thread id.
func NewThread() policy.ThreadID { return storetest.NewThread() }

// hostile is text a sender controls: HTML, a script, CR/LF, a terminal
// escape. The stores keep it as written; escaping is the display's job.
const hostile = "<b>x</b><script>alert(1)</script>\r\nBcc: all@example.org\x1b[2J\x1b]0;pwned\x07"

// Entry returns a storm's history entry for thread th, last seen at last.
func Entry(th policy.ThreadID, last time.Time) history.Entry {
	return history.Entry{
		Thread: th, Subject: "All hands: Q3 " + hostile, Sender: "ceo@example.org",
		Lists: []string{"all@example.org", "staff@example.org"}, Audience: 850_000,
		FirstSeen: last.Add(-time.Hour), LastSeen: last,
		StormAt: last.Add(-30 * time.Minute), StormRule: string(policy.RuleMaxReplies),
		NearMissAt: last.Add(-40 * time.Minute),
		Accepted:   10, Refused: 70, Allowed: 1,
		Senders: map[string]string{"a@example.org": "counted", hostile: "blocked"},
		Queued: []history.QueueRef{
			{Node: "mx1", ID: "4ABCD1234", Kind: string(policy.KindOriginal), Sender: "ceo@example.org", Status: history.QueueAccepted, Time: last.Add(-time.Hour)},
			{Node: "mx2", ID: "4XYZ", Kind: string(policy.KindReply), Sender: hostile, Status: history.QueueHeld, Time: last},
		},
	}
}

func ref(i int, now time.Time) history.QueueRef {
	return history.QueueRef{
		Node: fmt.Sprintf("mx%d", i%3), ID: fmt.Sprintf("Q%05d", i), Kind: string(policy.KindReply),
		Sender: fmt.Sprintf("r%d@example.org", i), Status: history.QueueAccepted, Time: now.Add(time.Duration(i) * time.Millisecond),
	}
}

// asJSON is what the suite compares entries and refs by: a store keeps
// times to the millisecond in UTC, which JSON shows exactly.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func msUTC(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

func threadsOf(es []history.Entry) []policy.ThreadID {
	out := make([]policy.ThreadID, len(es))
	for i, e := range es {
		out[i] = e.Thread
	}
	return out
}

func save(t *testing.T, s history.Store, e history.Entry, keep time.Duration, max int) {
	t.Helper()
	if err := s.Save(ctx(t), e, keep, max); err != nil {
		t.Fatalf("Save(%s): %v", e.Thread, err)
	}
}

func list(t *testing.T, s history.Store, since time.Time, limit int) []history.Entry {
	t.Helper()
	es, err := s.List(ctx(t), since, limit)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return es
}

func queued(t *testing.T, s history.Store, th policy.ThreadID) []history.QueueRef {
	t.Helper()
	refs, err := s.Queued(ctx(t), th)
	if err != nil {
		t.Fatalf("Queued(%s): %v", th, err)
	}
	return refs
}

// testQueued: queue ids come back oldest first across calls, as written
// (hostile sender included), and only the first MaxQueueRefs are kept.
func testQueued(t *testing.T, s history.Store) {
	th, now := NewThread(), time.Now()
	if got := queued(t, s, th); len(got) != 0 {
		t.Errorf("Queued of an unknown thread = %v, want none", got)
	}
	first := []history.QueueRef{ref(0, now), ref(1, now)}
	first[1].Sender, first[1].Status = hostile, history.QueueHeld
	if err := s.AddQueued(ctx(t), th, first, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueued(ctx(t), th, []history.QueueRef{ref(2, now)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	want := []history.QueueRef{first[0], first[1], ref(2, now)}
	for i := range want {
		want[i].Time = msUTC(want[i].Time)
	}
	if got := queued(t, s, th); asJSON(t, got) != asJSON(t, want) {
		t.Errorf("Queued =\n%s\nwant\n%s", asJSON(t, got), asJSON(t, want))
	}

	// The cap: more than MaxQueueRefs in two calls; the first are kept.
	th = NewThread()
	var refs []history.QueueRef
	for i := range history.MaxQueueRefs + 50 {
		refs = append(refs, ref(i, now))
	}
	half := history.MaxQueueRefs / 2
	for _, part := range [][]history.QueueRef{refs[:half], refs[half:]} {
		if err := s.AddQueued(ctx(t), th, part, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	got := queued(t, s, th)
	if len(got) != history.MaxQueueRefs {
		t.Fatalf("Queued after %d refs: %d, want the cap %d", len(refs), len(got), history.MaxQueueRefs)
	}
	if got[0].ID != refs[0].ID || got[len(got)-1].ID != refs[history.MaxQueueRefs-1].ID {
		t.Errorf("Queued kept %s..%s, want the first: %s..%s", got[0].ID, got[len(got)-1].ID, refs[0].ID, refs[history.MaxQueueRefs-1].ID)
	}
	// Full: another call keeps the first ones still.
	if err := s.AddQueued(ctx(t), th, []history.QueueRef{ref(99999, now)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := queued(t, s, th); len(got) != history.MaxQueueRefs || got[len(got)-1].ID != refs[history.MaxQueueRefs-1].ID {
		t.Errorf("a full thread took another ref: %d refs, last %s", len(got), got[len(got)-1].ID)
	}
}

// testReplace: a second save of a thread replaces its entry, and
// the history lists it once.
func testReplace(t *testing.T, s history.Store) {
	th, now := NewThread(), time.Now()
	save(t, s, Entry(th, now), time.Hour, 0)
	e := Entry(th, now.Add(time.Second))
	e.Refused, e.Senders = 71, map[string]string{"b@example.org": "blocked"}
	e.Queued = nil
	save(t, s, e, time.Hour, 0)
	got, err := s.Get(ctx(t), th)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.FirstSeen, want.LastSeen, want.StormAt, want.NearMissAt = msUTC(e.FirstSeen), msUTC(e.LastSeen), msUTC(e.StormAt), msUTC(e.NearMissAt)
	if asJSON(t, got) != asJSON(t, want) {
		t.Errorf("Get =\n%s\nwant\n%s", asJSON(t, got), asJSON(t, want))
	}
	if !got.IsStorm() {
		t.Error("a storm's entry is not IsStorm")
	}
	if all := list(t, s, now.Add(-time.Hour), 0); len(all) != 1 || all[0].Refused != 71 {
		t.Errorf("List after two saves of one thread = %q, want it once, refused 71", threadsOf(all))
	}
	if _, err := s.Get(ctx(t), NewThread()); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("Get an unknown thread: %v, want ErrNotFound", err)
	}
}

// testListing: since, limit and order (most recent LastSeen first).
func testListing(t *testing.T, s history.Store) {
	base := time.Now().Add(-time.Minute)
	ths := make([]policy.ThreadID, 5)
	for _, i := range []int{2, 0, 4, 1, 3} { // saved out of order
		ths[i] = NewThread()
		e := Entry(ths[i], base.Add(time.Duration(i)*time.Second))
		if i == 3 {
			e.StormAt, e.StormRule = time.Time{}, "" // a near miss
		}
		save(t, s, e, time.Hour, 0)
	}
	for _, tc := range []struct {
		name  string
		since time.Time
		limit int
		want  []policy.ThreadID
	}{
		{"all", base.Add(-time.Hour), 0, []policy.ThreadID{ths[4], ths[3], ths[2], ths[1], ths[0]}},
		{"since", base.Add(2 * time.Second), 0, []policy.ThreadID{ths[4], ths[3], ths[2]}},
		{"since within the millisecond", msUTC(base.Add(2 * time.Second)).Add(999 * time.Microsecond), 0, []policy.ThreadID{ths[4], ths[3], ths[2]}},
		{"since the millisecond after", msUTC(base.Add(2 * time.Second)).Add(time.Millisecond), 0, []policy.ThreadID{ths[4], ths[3]}},
		{"limit", base.Add(-time.Hour), 2, []policy.ThreadID{ths[4], ths[3]}},
		{"since and limit", base.Add(time.Second), 3, []policy.ThreadID{ths[4], ths[3], ths[2]}},
		{"future", base.Add(time.Hour), 0, []policy.ThreadID{}},
	} {
		if got := threadsOf(list(t, s, tc.since, tc.limit)); asJSON(t, got) != asJSON(t, tc.want) {
			t.Errorf("%s: List = %q, want %q", tc.name, got, tc.want)
		}
	}
	all := list(t, s, base.Add(-time.Hour), 0)
	if len(all) == 5 && (all[1].IsStorm() || !all[0].IsStorm()) {
		t.Errorf("storm/near miss: %v %v, want the near miss second only", all[0].IsStorm(), all[1].IsStorm())
	}
}

// testMax: the index keeps the max most recent entries; the oldest
// LastSeen leaves first, whatever the order of the saves, and its entry
// goes with it.
func testMax(t *testing.T, s history.Store) {
	base := time.Now().Add(-time.Minute)
	ths := make([]policy.ThreadID, 5)
	for _, i := range []int{1, 2, 3, 4, 0} { // the oldest saved last
		ths[i] = NewThread()
		save(t, s, Entry(ths[i], base.Add(time.Duration(i)*time.Second)), time.Hour, 3)
	}
	want := []policy.ThreadID{ths[4], ths[3], ths[2]}
	if got := threadsOf(list(t, s, base.Add(-time.Hour), 0)); asJSON(t, got) != asJSON(t, want) {
		t.Errorf("List with max 3 = %q, want %q", got, want)
	}
	for _, th := range ths[:2] {
		if _, err := s.Get(ctx(t), th); !errors.Is(err, history.ErrNotFound) {
			t.Errorf("Get a dropped entry: %v, want ErrNotFound", err)
		}
	}
	// max <= 0: no bound.
	for range 3 {
		save(t, s, Entry(NewThread(), base.Add(10*time.Second)), time.Hour, 0)
	}
	before := list(t, s, base.Add(-time.Hour), 0)
	if len(before) != 6 {
		t.Errorf("List after 3 more without a max: %d entries, want 6", len(before))
	}
	// A lower max drops several at once, entries too.
	newest := NewThread()
	save(t, s, Entry(newest, base.Add(20*time.Second)), time.Hour, 2)
	if got := threadsOf(list(t, s, base.Add(-time.Hour), 0)); len(got) != 2 || got[0] != newest || len(before) > 0 && got[1] != before[0].Thread {
		t.Errorf("List with max 2 = %q, want %s and the newest before it", got, newest)
	}
	for _, e := range before[min(1, len(before)):] {
		if _, err := s.Get(ctx(t), e.Thread); !errors.Is(err, history.ErrNotFound) {
			t.Errorf("Get an entry dropped by a lower max: %v, want ErrNotFound", err)
		}
	}
}

// testExpiry: an entry is gone at LastSeen+keep, queue ids at
// retention after the last AddQueued; an entry already older than keep
// is not kept at all.
func testExpiry(t *testing.T, s history.Store) {
	th, now := NewThread(), time.Now()
	const keep = time.Second
	save(t, s, Entry(th, now), keep, 0)
	if err := s.AddQueued(ctx(t), th, []history.QueueRef{ref(0, now)}, keep); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), th); err != nil {
		t.Fatalf("Get right after the save: %v", err)
	}
	if got := queued(t, s, th); len(got) != 1 {
		t.Fatalf("Queued right after AddQueued: %d refs", len(got))
	}
	eventually(t, "history entry expired", func() bool {
		_, err := s.Get(ctx(t), th)
		return errors.Is(err, history.ErrNotFound)
	})
	if got := list(t, s, now.Add(-time.Hour), 0); len(got) != 0 {
		t.Errorf("List lists %q after it expired", threadsOf(got))
	}
	eventually(t, "queue ids expired", func() bool { return len(queued(t, s, th)) == 0 })

	old := NewThread()
	save(t, s, Entry(old, now.Add(-2*time.Hour)), time.Hour, 0)
	if _, err := s.Get(ctx(t), old); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("Get an entry older than keep: %v, want ErrNotFound", err)
	}
	if got := list(t, s, now.Add(-3*time.Hour), 0); len(got) != 0 {
		t.Errorf("List lists %q, older than keep", threadsOf(got))
	}
}

// testBounds: text cut to TextMax runes (never inside a
// rune), kept as written otherwise; senders, lists and queue ids bounded;
// invalid UTF-8 made valid as JSON would.
func testBounds(t *testing.T, s history.Store) {
	th, now := NewThread(), time.Now()
	e := Entry(th, now)
	e.Subject = strings.Repeat("é", history.TextMax+10)
	e.Sender = hostile
	e.Lists = nil
	for i := range 60 {
		e.Lists = append(e.Lists, fmt.Sprintf("list%d@example.org", i))
	}
	e.Senders = map[string]string{}
	for i := range history.MaxSenders + 20 {
		e.Senders[fmt.Sprintf("s%04d@example.org", i)] = "counted"
	}
	e.Queued = nil
	for i := range history.MaxQueueRefs + 5 {
		e.Queued = append(e.Queued, ref(i, now))
	}
	e.Queued[0].Sender = "bad\xffutf8"
	save(t, s, e, time.Hour, 0)
	got, err := s.Get(ctx(t), th)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("é", history.TextMax); got.Subject != want {
		t.Errorf("Subject: %d runes, want cut to %d", len([]rune(got.Subject)), history.TextMax)
	}
	if got.Sender != hostile {
		t.Errorf("Sender = %q, want it as written: %q", got.Sender, hostile)
	}
	if len(got.Lists) != 50 || got.Lists[0] != "list0@example.org" {
		t.Errorf("Lists: %d, first %q; want the first 50", len(got.Lists), got.Lists[0])
	}
	if len(got.Senders) != history.MaxSenders {
		t.Errorf("Senders: %d, want %d", len(got.Senders), history.MaxSenders)
	}
	if _, ok := got.Senders["s0000@example.org"]; !ok {
		t.Error("Senders lost the first sender")
	}
	if len(got.Queued) != history.MaxQueueRefs || got.Queued[0].ID != "Q00000" {
		t.Errorf("Queued: %d, want the first %d", len(got.Queued), history.MaxQueueRefs)
	}
	if got.Queued[0].Sender != "bad\uFFFDutf8" {
		t.Errorf("invalid UTF-8 kept as %q, want each bad byte as U+FFFD", got.Queued[0].Sender)
	}
	if listed := list(t, s, now.Add(-time.Hour), 0); len(listed) != 1 || asJSON(t, listed[0]) != asJSON(t, got.Summary()) {
		t.Error("List does not list Get's entry as its summary (no senders, no queue ids)")
	}
	// What a store returns is a copy: changing it changes nothing kept.
	got.Senders["mallory@example.org"] = "allow"
	got.Lists[0] = "changed"
	again, err := s.Get(ctx(t), th)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Senders["mallory@example.org"]; ok || again.Lists[0] != "list0@example.org" {
		t.Error("changing a returned entry changed the stored one")
	}
}

// testInvalid: thread ids that cannot be a key, and arguments that
// make no sense, are refused with ErrInvalid by every method.
func testInvalid(t *testing.T, s history.Store) {
	now := time.Now()
	for _, th := range []policy.ThreadID{"", "a:b", "{x}", "a b", policy.ThreadID(strings.Repeat("a", 65))} {
		for name, err := range map[string]error{
			"AddQueued": s.AddQueued(ctx(t), th, []history.QueueRef{ref(0, now)}, time.Hour),
			"Save":      s.Save(ctx(t), Entry(th, now), time.Hour, 0),
			"Queued":    func() error { _, err := s.Queued(ctx(t), th); return err }(),
			"Get":       func() error { _, err := s.Get(ctx(t), th); return err }(),
		} {
			if !errors.Is(err, history.ErrInvalid) {
				t.Errorf("%s(%q): %v, want ErrInvalid", name, th, err)
			}
		}
	}
	th := NewThread()
	for name, err := range map[string]error{
		"AddQueued with no retention": s.AddQueued(ctx(t), th, []history.QueueRef{ref(0, now)}, 0),
		"Save with no keep":           s.Save(ctx(t), Entry(th, now), 0, 0),
		"Save with no time":           s.Save(ctx(t), Entry(th, time.Time{}), time.Hour, 0),
	} {
		if !errors.Is(err, history.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if got := list(t, s, now.Add(-time.Hour), 0); len(got) != 0 {
		t.Errorf("refused saves left %q", threadsOf(got))
	}
}

// testCanceled: every method fails on a canceled context and keeps
// nothing.
func testCanceled(t *testing.T, s history.Store) {
	th, now := NewThread(), time.Now()
	c, cancel := context.WithCancel(context.Background())
	cancel()
	for name, err := range map[string]error{
		"AddQueued": s.AddQueued(c, th, []history.QueueRef{ref(0, now)}, time.Hour),
		"Save":      s.Save(c, Entry(th, now), time.Hour, 0),
		"Queued":    func() error { _, err := s.Queued(c, th); return err }(),
		"Get":       func() error { _, err := s.Get(c, th); return err }(),
		"List":      func() error { _, err := s.List(c, now.Add(-time.Hour), 0); return err }(),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s on a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if got := queued(t, s, th); len(got) != 0 {
		t.Errorf("a canceled AddQueued kept %d refs", len(got))
	}
	if _, err := s.Get(ctx(t), th); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("a canceled Save kept an entry: %v", err)
	}
}
