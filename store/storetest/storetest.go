// Package storetest is the one conformance suite every store.Store runs:
// the memory store always, Redis (and Redis Cluster) against real servers
// the tests start themselves. Two stores that pass it count, block,
// override and link exactly alike.
//
// Times are real: each test starts from time.Now(), so that Redis' own
// TTLs (blocks, overrides, links) and the records' times agree, and
// expiries are awaited by polling with a bounded deadline.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Store is what the suite tests: the hot path and the admin view.
type Store interface {
	store.Store
	store.Admin
}

// RawOverrider is implemented by test harnesses that can store an override
// value verbatim, as an operator with redis-cli can (including values that
// are not overrides). The suite's garbage-override test runs only with it.
type RawOverrider interface {
	SetRawOverride(t *testing.T, thread policy.ThreadID, value string)
}

// Run runs the suite. newStore returns a fresh, empty store for one test;
// the suite closes it when the test ends. Tests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	for _, tc := range []struct {
		name string
		f    func(t *testing.T, s Store)
	}{
		{"Threshold", testThreshold},
		{"DeliveryBudget", testDeliveryBudget},
		{"RuleOrder", testRuleOrder},
		{"ZeroLimitsDisable", testZeroLimits},
		{"LimitTable", testLimitTable},
		{"WindowSlides", testWindowSlides},
		{"BlockExpires", testBlockExpires},
		{"Duplicate", testDuplicate},
		{"DuplicateAfterWindow", testDuplicateAfterWindow},
		{"NoMessageKey", testNoMessageKey},
		{"OriginalsAndAutoReplies", testOriginals},
		{"OverrideAllow", testOverrideAllow},
		{"OverrideBlock", testOverrideBlock},
		{"OverrideGarbage", testOverrideGarbage},
		{"OverrideTTL", testOverrideTTL},
		{"Links", testLinks},
		{"LinksFirstWriterWins", testLinksFirstWriterWins},
		{"RefusedWritesNoLinks", testRefusedWritesNoLinks},
		{"AdmittedAfterRefusals", testAdmittedAfterRefusals},
		{"LinkTTL", testLinkTTL},
		{"Globals", testGlobals},
		{"Concurrent", testConcurrent},
		{"ThreadInfo", testThreadInfo},
		{"Senders", testSenders},
		{"SendersCapped", testSendersCapped},
		{"AutoReplyWritesNothing", testAutoReplyWritesNothing},
		{"BlockedCount", testBlockedCount},
		{"Reset", testReset},
		{"Threads", testThreads},
		{"Storms", testStorms},
		{"Invalid", testInvalid},
		{"CanceledContext", testCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.f(t, s)
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

func randHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewThread returns a random thread id.
func NewThread() policy.ThreadID { return policy.ThreadID(randHex(16)) }

// NewKey returns a random identity key.
func NewKey() policy.Key { return policy.Key(randHex(32)) }

func limits(maxReplies int, budget int64) policy.Limits {
	return policy.Limits{MaxReplies: maxReplies, DeliveryBudget: budget, Window: time.Hour, BlockFor: 6 * time.Hour}
}

// reply is a new large-audience reply with its own message key.
func reply(th policy.ThreadID, now time.Time, audience int, l policy.Limits) store.Record {
	return store.Record{
		Thread: th, Message: NewKey(), Kind: policy.KindReply, Audience: audience,
		Sender: "replier@example.org", Subject: "Re: all hands", Now: now,
		Limits: l, Retention: 24 * time.Hour,
	}
}

func record(t *testing.T, s store.Store, r store.Record) policy.Tally {
	t.Helper()
	tally, err := s.Record(ctx(t), r)
	if err != nil {
		t.Fatalf("Record(%s %s at %s): %v", r.Kind, r.Message, r.Now.Format("15:04:05.000"), err)
	}
	return tally
}

func info(t *testing.T, s store.Admin, th policy.ThreadID, now time.Time) store.ThreadInfo {
	t.Helper()
	ti, err := s.Thread(ctx(t), th, now)
	if err != nil {
		t.Fatalf("Thread(%s): %v", th, err)
	}
	return ti
}

// want checks a tally's status, count and delivered.
func want(t *testing.T, what string, got policy.Tally, status policy.Status, count int, delivered int64) {
	t.Helper()
	if got.Status != status || got.Count != count || got.Delivered != delivered {
		t.Errorf("%s: got %s count=%d delivered=%d, want %s count=%d delivered=%d (tally %+v)",
			what, got.Status, got.Count, got.Delivered, status, count, delivered, got)
	}
}

// eventually polls cond until it holds or pollTimeout passes.
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

func testThreshold(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(3, 0)
	for i := 1; i <= 3; i++ {
		want(t, "reply within the limit", record(t, s, reply(th, now, 3000, l)), policy.StatusCounted, i, int64(i)*3000)
	}
	got := record(t, s, reply(th, now, 3000, l))
	want(t, "reply N+1", got, policy.StatusCrossed, 3, 9000)
	if got.Crossed != policy.RuleMaxReplies || got.BlockTTL != l.BlockFor {
		t.Errorf("reply N+1: crossed %q block %v, want %q %v", got.Crossed, got.BlockTTL, policy.RuleMaxReplies, l.BlockFor)
	}
	got = record(t, s, reply(th, now.Add(time.Second), 3000, l))
	want(t, "reply to the blocked thread", got, policy.StatusBlocked, 3, 9000)
	if got.BlockTTL <= 0 || got.BlockTTL > l.BlockFor || got.Crossed != "" {
		t.Errorf("reply to the blocked thread: block %v crossed %q, want (0, %v] and none", got.BlockTTL, got.Crossed, l.BlockFor)
	}

	// A limit of one: the first counts, the second crosses.
	th = NewThread()
	want(t, "first of 1", record(t, s, reply(th, now, 5000, limits(1, 0))), policy.StatusCounted, 1, 5000)
	want(t, "second of 1", record(t, s, reply(th, now, 5000, limits(1, 0))), policy.StatusCrossed, 1, 5000)
}

func testDeliveryBudget(t *testing.T, s Store) {
	now := time.Now()
	// An NHS-sized list: stopped at the second reply-all.
	th, l := NewThread(), limits(10, 1_000_000)
	want(t, "1st of 850000", record(t, s, reply(th, now, 850_000, l)), policy.StatusCounted, 1, 850_000)
	got := record(t, s, reply(th, now, 850_000, l))
	want(t, "2nd of 850000", got, policy.StatusCrossed, 1, 850_000)
	if got.Crossed != policy.RuleDeliveryBudget {
		t.Errorf("2nd of 850000 crossed %q, want %q", got.Crossed, policy.RuleDeliveryBudget)
	}

	// Reaching the budget exactly is allowed; passing it is not.
	th, l = NewThread(), limits(0, 1000)
	want(t, "500 of 1000", record(t, s, reply(th, now, 500, l)), policy.StatusCounted, 1, 500)
	want(t, "1000 of 1000", record(t, s, reply(th, now, 500, l)), policy.StatusCounted, 2, 1000)
	got = record(t, s, reply(th, now, 1, l))
	want(t, "1001 of 1000", got, policy.StatusCrossed, 2, 1000)
	if got.Crossed != policy.RuleDeliveryBudget {
		t.Errorf("1001 of 1000 crossed %q", got.Crossed)
	}
}

func testRuleOrder(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(2, 1000)
	record(t, s, reply(th, now, 500, l))
	record(t, s, reply(th, now, 500, l))
	if got := record(t, s, reply(th, now, 500, l)); got.Crossed != policy.RuleMaxReplies {
		t.Errorf("crossing both limits: rule %q, want %q first", got.Crossed, policy.RuleMaxReplies)
	}
}

func testZeroLimits(t *testing.T, s Store) {
	now := time.Now()
	th := NewThread()
	for i := 1; i <= 50; i++ {
		if got := record(t, s, reply(th, now, 1_000_000, limits(0, 0))); got.Status != policy.StatusCounted || got.Count != i {
			t.Fatalf("no limits, reply %d: %+v", i, got)
		}
	}
	th = NewThread() // count off, budget on
	for i := 1; i <= 10; i++ {
		record(t, s, reply(th, now, 100, limits(0, 1000)))
	}
	if got := record(t, s, reply(th, now, 100, limits(0, 1000))); got.Crossed != policy.RuleDeliveryBudget {
		t.Errorf("budget only: 11th %+v", got)
	}
	th = NewThread() // budget off, count on
	for i := 1; i <= 5; i++ {
		record(t, s, reply(th, now, 1<<30, limits(5, 0)))
	}
	if got := record(t, s, reply(th, now, 1<<30, limits(5, 0))); got.Crossed != policy.RuleMaxReplies {
		t.Errorf("count only: 6th %+v", got)
	}
}

func testWindowSlides(t *testing.T, s Store) {
	base, l := time.Now(), limits(2, 0)
	l.Window = 10 * time.Minute
	// One millisecond before the first reply leaves the window: a storm.
	th := NewThread()
	record(t, s, reply(th, base, 3000, l))
	record(t, s, reply(th, base.Add(5*time.Minute), 3000, l))
	want(t, "inside the window", record(t, s, reply(th, base.Add(l.Window-time.Millisecond), 3000, l)),
		policy.StatusCrossed, 2, 6000)
	// Once it has left, it frees its slot.
	th = NewThread()
	record(t, s, reply(th, base, 1000, l))
	record(t, s, reply(th, base.Add(5*time.Minute), 3000, l))
	want(t, "first reply aged out", record(t, s, reply(th, base.Add(l.Window), 3000, l)),
		policy.StatusCounted, 2, 6000)
	if got := info(t, s, th, base.Add(l.Window)).InWindow; got != 2 {
		t.Errorf("InWindow = %d, want 2", got)
	}
	if got := info(t, s, th, base.Add(5*time.Minute+l.Window)).InWindow; got != 1 {
		t.Errorf("InWindow later = %d, want 1", got)
	}
}

func testBlockExpires(t *testing.T, s Store) {
	th, l := NewThread(), limits(1, 0)
	// Window = BlockFor: once the block is over, the first reply has left
	// the window, however slowly the replies before arrived.
	l.Window, l.BlockFor = 500*time.Millisecond, 500*time.Millisecond
	record(t, s, reply(th, time.Now(), 3000, l))
	if got := record(t, s, reply(th, time.Now(), 3000, l)); got.Status != policy.StatusCrossed {
		t.Fatalf("second reply: %+v, want crossed", got)
	}
	if got := record(t, s, reply(th, time.Now(), 3000, l)); got.Status != policy.StatusBlocked {
		t.Fatalf("third reply: %+v, want blocked", got)
	}
	eventually(t, "block expired", func() bool { return !info(t, s, th, time.Now()).Blocked })
	want(t, "after the block", record(t, s, reply(th, time.Now(), 3000, l)), policy.StatusCounted, 1, 3000)
}

// testDuplicate: the same message again (message-id, envelope sender and
// audience: an MTA's retry, a relay hop) passes as itself, even on a
// blocked thread, policy.MaxDuplicates times; a message-id reused by
// another sender or to another audience is a reply like any other, so it
// cannot pass a block.
func testDuplicate(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(2, 0)
	a := reply(th, now, 3000, l)
	want(t, "A", record(t, s, a), policy.StatusCounted, 1, 3000)
	want(t, "A again", record(t, s, a), policy.StatusDuplicate, 1, 3000)
	other := a
	other.Sender = "other@example.org"
	want(t, "A's id from another sender", record(t, s, other), policy.StatusCounted, 2, 6000)
	c := reply(th, now, 3000, l)
	want(t, "C", record(t, s, c), policy.StatusCrossed, 2, 6000)
	want(t, "A while blocked", record(t, s, a), policy.StatusDuplicate, 2, 6000)
	want(t, "A's id from a third sender while blocked", record(t, s, func() store.Record {
		r := a
		r.Sender = "mallory@evil.example"
		return r
	}()), policy.StatusBlocked, 2, 6000)
	wider := a
	wider.Audience = 600_000
	want(t, "A's id and sender to another audience while blocked", record(t, s, wider), policy.StatusBlocked, 2, 6000)
	want(t, "C again", record(t, s, c), policy.StatusBlocked, 2, 6000) // C was never counted
	for pass := 3; pass <= policy.MaxDuplicates; pass++ {
		want(t, fmt.Sprintf("A while blocked, pass %d", pass), record(t, s, a), policy.StatusDuplicate, 2, 6000)
	}
	want(t, "A once its passes ran out", record(t, s, a), policy.StatusBlocked, 2, 6000)
	if ti := info(t, s, th, now); ti.Accepted != 2 || ti.Refused != 5 {
		t.Errorf("accepted %d refused %d, want 2 and 5", ti.Accepted, ti.Refused)
	}

	// On a thread that is not blocked, a message whose passes ran out
	// counts again.
	th, l = NewThread(), limits(10, 0)
	a = reply(th, now, 3000, l)
	want(t, "A", record(t, s, a), policy.StatusCounted, 1, 3000)
	for pass := 1; pass <= policy.MaxDuplicates; pass++ {
		want(t, fmt.Sprintf("A, pass %d", pass), record(t, s, a), policy.StatusDuplicate, 1, 3000)
	}
	want(t, "A once its passes ran out", record(t, s, a), policy.StatusCounted, 2, 6000)
	want(t, "A after that", record(t, s, a), policy.StatusCounted, 3, 9000)
}

func testDuplicateAfterWindow(t *testing.T, s Store) {
	th, base, l := NewThread(), time.Now(), limits(5, 0)
	a := reply(th, base, 3000, l)
	want(t, "A", record(t, s, a), policy.StatusCounted, 1, 3000)
	a.Now = base.Add(l.Window)
	want(t, "A after its window", record(t, s, a), policy.StatusCounted, 1, 3000)
}

func testNoMessageKey(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(5, 0)
	r := reply(th, now, 3000, l)
	r.Message = ""
	want(t, "first without message-id", record(t, s, r), policy.StatusCounted, 1, 3000)
	want(t, "second without message-id", record(t, s, r), policy.StatusCounted, 2, 6000)
}

func testOriginals(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(2, 0)
	orig := reply(th, now, 900, l)
	orig.Kind, orig.Sender, orig.Subject = policy.KindOriginal, "ceo@example.org", "All hands"
	want(t, "original", record(t, s, orig), policy.StatusNoted, 0, 0)
	auto := reply(th, now, 900, l)
	auto.Kind = policy.KindAutoReply
	want(t, "auto-reply", record(t, s, auto), policy.StatusNoted, 0, 0)
	record(t, s, reply(th, now, 3000, l))
	record(t, s, reply(th, now, 3000, l))
	orig2 := orig
	orig2.Message, orig2.Sender, orig2.Subject = NewKey(), "other@example.org", "Other"
	want(t, "original with replies", record(t, s, orig2), policy.StatusNoted, 2, 6000)
	record(t, s, reply(th, now, 3000, l)) // crosses
	got := record(t, s, auto)
	want(t, "auto-reply to a blocked thread", got, policy.StatusNoted, 2, 6000)
	if got.BlockTTL <= 0 || got.BlockTTL > l.BlockFor {
		t.Errorf("auto-reply to a blocked thread: BlockTTL %v", got.BlockTTL)
	}
	ti := info(t, s, th, now)
	if ti.Accepted != 2 || ti.Refused != 1 || ti.Allowed != 0 || ti.InWindow != 2 {
		t.Errorf("counters %d/%d/%d in window %d, want 2/1/0 and 2", ti.Accepted, ti.Refused, ti.Allowed, ti.InWindow)
	}
	if ti.Subject != "All hands" || ti.Sender != "ceo@example.org" || ti.Audience != 3000 {
		t.Errorf("thread named %q by %q audience %d, want the first original's, and 3000", ti.Subject, ti.Sender, ti.Audience)
	}
}

func testCanceled(t *testing.T, s Store) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Record(c, reply(NewThread(), time.Now(), 3000, limits(1, 0))); !errors.Is(err, context.Canceled) {
		t.Errorf("Record with a canceled context: %v", err)
	}
	if _, err := s.Resolve(c, []policy.Key{NewKey()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with a canceled context: %v", err)
	}
	if _, err := s.Globals(c); !errors.Is(err, context.Canceled) {
		t.Errorf("Globals with a canceled context: %v", err)
	}
}

// Reply is a new large-audience reply to thread th with its own message
// key, under a limit of maxReplies in an hour, for other packages' tests.
func Reply(th policy.ThreadID, now time.Time, audience, maxReplies int) store.Record {
	return reply(th, now, audience, limits(maxReplies, 0))
}
