package storetest

import (
	"errors"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

func testThreadInfo(t *testing.T, s Store) {
	base, l := time.Now(), limits(2, 0)
	th := NewThread()
	if _, err := s.Thread(ctx(t), th, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Thread(unknown) = %v, want ErrNotFound", err)
	}

	orig := reply(th, base, 2600, l)
	orig.Kind, orig.Sender, orig.Subject = policy.KindOriginal, "ceo@example.org", "All hands"
	record(t, s, orig)
	for i, sender := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		r := reply(th, base.Add(time.Duration(i+1)*time.Minute), 3000, l)
		r.Sender = sender
		if sender == "b@example.org" {
			r.Audience = 850_000
		}
		record(t, s, r)
	}
	got := info(t, s, th, base.Add(3*time.Minute))
	if got.BlockTTL <= 0 || got.BlockTTL > l.BlockFor {
		t.Errorf("BlockTTL = %v, want (0, %v]", got.BlockTTL, l.BlockFor)
	}
	got.BlockTTL = 0
	w := store.ThreadInfo{
		Thread: th, Subject: "All hands", Sender: "ceo@example.org",
		FirstSeen: ms(base), LastSeen: ms(base.Add(3 * time.Minute)),
		StormAt: ms(base.Add(3 * time.Minute)), StormRule: string(policy.RuleMaxReplies),
		Audience: 850_000, Accepted: 2, Refused: 1, InWindow: 2, Blocked: true,
		Senders: map[string]string{
			"ceo@example.org": "noted", "a@example.org": "counted",
			"b@example.org": "counted", "c@example.org": "crossed",
		},
	}
	checkInfo(t, "storm", got, w)

	// A thread known only by an operator's override.
	th = NewThread()
	setOverride(t, s, th, policy.OverrideBlock, time.Hour)
	got = info(t, s, th, time.Now()) // override TTLs run on the wall clock, set after base

	if got.OverrideTTL <= 0 || got.OverrideTTL > time.Hour {
		t.Errorf("OverrideTTL = %v, want (0, 1h]", got.OverrideTTL)
	}
	got.OverrideTTL = 0
	checkInfo(t, "override only", got, store.ThreadInfo{Thread: th, Override: policy.OverrideBlock, Senders: map[string]string{}})

	// Without an original, the first reply names the thread.
	th = NewThread()
	r := reply(th, base, 3000, l)
	record(t, s, r)
	r2 := reply(th, base.Add(time.Second), 4000, l)
	r2.Sender, r2.Subject = "second@example.org", "RE: RE: all hands"
	record(t, s, r2)
	got = info(t, s, th, base.Add(time.Second))
	if got.Subject != r.Subject || got.Sender != r.Sender || got.Audience != 4000 {
		t.Errorf("no original: subject %q sender %q audience %d, want the first reply's and 4000", got.Subject, got.Sender, got.Audience)
	}
}

func checkInfo(t *testing.T, what string, got, w store.ThreadInfo) {
	t.Helper()
	times := func(a, b time.Time) bool { return a.Equal(b) }
	if !times(got.FirstSeen, w.FirstSeen) || !times(got.LastSeen, w.LastSeen) || !times(got.StormAt, w.StormAt) {
		t.Errorf("%s: times first %v last %v storm %v, want %v %v %v", what,
			got.FirstSeen, got.LastSeen, got.StormAt, w.FirstSeen, w.LastSeen, w.StormAt)
	}
	got.FirstSeen, got.LastSeen, got.StormAt = w.FirstSeen, w.LastSeen, w.StormAt
	if !maps.Equal(got.Senders, w.Senders) {
		t.Errorf("%s: Senders = %v, want %v", what, got.Senders, w.Senders)
	}
	if got.Senders == nil {
		t.Errorf("%s: Senders is nil, want a map", what)
	}
	got.Senders = w.Senders
	if !reflect.DeepEqual(got, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, w)
	}
}

func testSenders(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(1, 0)
	send := func(sender string, kind policy.Kind) store.Record {
		r := reply(th, now, 3000, l)
		r.Sender, r.Kind = sender, kind
		record(t, s, r)
		return r
	}
	send("orig@example.org", policy.KindOriginal)
	send("auto@example.org", policy.KindAutoReply)
	a := send("a@example.org", policy.KindReply)
	record(t, s, a)
	send("b@example.org", policy.KindReply)
	send("c@example.org", policy.KindReply)
	setOverride(t, s, th, policy.OverrideAllow, 0)
	send("d@example.org", policy.KindReply)
	send("", policy.KindReply) // a null sender is not listed
	w := map[string]string{
		"orig@example.org": "noted", "a@example.org": "duplicate", // an auto-reply writes nothing
		"b@example.org": "crossed", "c@example.org": "blocked", "d@example.org": "allow",
	}
	if got := info(t, s, th, now).Senders; !maps.Equal(got, w) {
		t.Errorf("Senders = %v, want %v", got, w)
	}
}

func testReset(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(1, 0)
	orig := reply(th, now, 3000, l)
	orig.Kind, orig.Subject = policy.KindOriginal, "All hands"
	record(t, s, orig)
	record(t, s, reply(th, now, 3000, l))
	record(t, s, reply(th, now, 3000, l)) // crosses
	setOverride(t, s, th, policy.OverrideBlock, 0)
	if err := s.Reset(ctx(t), th); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	got := info(t, s, th, now)
	checkInfo(t, "after reset", got, store.ThreadInfo{
		Thread: th, Subject: "All hands", Sender: orig.Sender, Audience: 3000,
		FirstSeen: ms(now), LastSeen: ms(now), Senders: map[string]string{},
	})
	want(t, "reply after reset", record(t, s, reply(th, now, 3000, l)), policy.StatusCounted, 1, 3000)

	if err := s.Reset(ctx(t), NewThread()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reset(unknown) = %v, want ErrNotFound", err)
	}
}

func testInvalid(t *testing.T, s Store) {
	th, now := NewThread(), time.Now()
	valid := reply(th, now, 3000, limits(10, 0))
	for name, change := range map[string]func(r *store.Record){
		"no thread":         func(r *store.Record) { r.Thread = "" },
		"hash tag thread":   func(r *store.Record) { r.Thread = "a}b{c" },
		"colon thread":      func(r *store.Record) { r.Thread = "a:b" },
		"long thread":       func(r *store.Record) { r.Thread = policy.ThreadID(randHex(66)) },
		"bad message key":   func(r *store.Record) { r.Message = "x:5" },
		"bad link":          func(r *store.Record) { r.Links = []policy.Key{NewKey(), "a b"} },
		"empty link":        func(r *store.Record) { r.Links = []policy.Key{""} },
		"no kind":           func(r *store.Record) { r.Kind = "" },
		"no time":           func(r *store.Record) { r.Now = time.Time{} },
		"negative audience": func(r *store.Record) { r.Audience = -1 },
		"negative max":      func(r *store.Record) { r.Limits.MaxReplies = -1 },
		"negative budget":   func(r *store.Record) { r.Limits.DeliveryBudget = -1 },
		"budget over 2^53":  func(r *store.Record) { r.Limits.DeliveryBudget = policy.MaxLimit + 1 },
		"no window":         func(r *store.Record) { r.Limits.Window = 0 },
		"no block_for":      func(r *store.Record) { r.Limits.BlockFor = time.Microsecond },
		"no retention":      func(r *store.Record) { r.Retention = 0 },
	} {
		r := valid
		change(&r)
		if _, err := s.Record(ctx(t), r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Record(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Thread(ctx(t), th, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after invalid records, Thread = %v, want ErrNotFound (nothing written)", err)
	}
	if _, err := s.Thread(ctx(t), "{x}", now); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Thread({x}) = %v, want ErrInvalid", err)
	}
	if err := s.SetOverride(ctx(t), "", policy.OverrideAllow, 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SetOverride(\"\") = %v, want ErrInvalid", err)
	}
	if err := s.Reset(ctx(t), "a b"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Reset(\"a b\") = %v, want ErrInvalid", err)
	}
}
