package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Thread identity that outsiders cannot steer: links are written by the
// first message that carries them, and only by a message the store let
// through.

func resolve(t *testing.T, s store.Store, keys ...policy.Key) []policy.ThreadID {
	t.Helper()
	got, err := s.Resolve(ctx(t), keys)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return got
}

// testLinksFirstWriterWins: a later message carrying an identity already
// linked, a forged Message-ID say, does not move its link, even when it is
// counted in a thread of its own.
func testLinksFirstWriterWins(t *testing.T, s Store) {
	now, l := time.Now(), limits(10, 0)
	root := reply("", now, 3000, l)
	root.Kind, root.Thread = policy.KindOriginal, root.Message.Thread() // an original starts its own thread
	root.Links = []policy.Key{root.Message}
	record(t, s, root)

	forged := reply(NewThread(), now, 600_000, l) // counted, in a thread the forger chose
	forged.Message, forged.Links = root.Message, []policy.Key{root.Message}
	want(t, "forged root id", record(t, s, forged), policy.StatusCounted, 1, 600_000)

	if got := resolve(t, s, root.Message); got[0] != root.Thread {
		t.Errorf("root's link after the forgery = %q, want %s", got[0], root.Thread)
	}
	if got := record(t, s, reply(root.Thread, now, 3000, l)); got.Thread != root.Thread || got.Count != 1 {
		t.Errorf("reply after the forgery: %s count %d, want %s count 1", got.Thread, got.Count, root.Thread)
	}

	// A reply counted in a thread other than its own id's claims its id's
	// link there; a second message with the same id does not move it.
	moved := reply(NewThread(), now, 3000, l)
	moved.Links = []policy.Key{moved.Message}
	record(t, s, moved)
	again := reply(NewThread(), now, 3000, l)
	again.Message, again.Links = moved.Message, []policy.Key{moved.Message}
	want(t, "second message with the id", record(t, s, again), policy.StatusCounted, 1, 3000)
	if got := resolve(t, s, moved.Message); got[0] != moved.Thread {
		t.Errorf("link after a second message with the id = %q, want the first one's %s", got[0], moved.Thread)
	}
}

// testRefusedWritesNoLinks: a refused message (crossing a limit, on a
// blocked thread, under an override block) writes no link, and neither
// does an auto-reply.
func testRefusedWritesNoLinks(t *testing.T, s Store) {
	now, l := time.Now(), limits(1, 0)
	th := NewThread()
	want(t, "first", record(t, s, reply(th, now, 3000, l)), policy.StatusCounted, 1, 3000)
	var refused []store.Record
	for i, status := range []policy.Status{policy.StatusCrossed, policy.StatusBlocked, policy.StatusBlocked} {
		r := reply(th, now, 3000, l)
		r.Links = []policy.Key{NewKey(), r.Message}
		if got := record(t, s, r); got.Status != status {
			t.Fatalf("refusal %d: %+v, want %s", i, got, status)
		}
		refused = append(refused, r)
	}
	ob := NewThread()
	setOverride(t, s, ob, policy.OverrideBlock, 0)
	orig := reply(ob, now, 3000, l)
	orig.Kind, orig.Links = policy.KindOriginal, []policy.Key{NewKey(), orig.Message}
	record(t, s, orig)
	refused = append(refused, orig)
	auto := reply(NewThread(), now, 3000, l)
	auto.Kind, auto.Links = policy.KindAutoReply, []policy.Key{NewKey(), auto.Message}
	record(t, s, auto)
	refused = append(refused, auto)

	for i, r := range refused {
		if got := resolve(t, s, r.Links...); !slices.Equal(got, make([]policy.ThreadID, len(r.Links))) {
			t.Errorf("refused %d (%s): links lead to %q, want nowhere", i, r.Kind, got)
		}
	}
}

// testAdmittedAfterRefusals: once a thread that refused lets a message
// through again (an operator's allow), that message's links are written.
func testAdmittedAfterRefusals(t *testing.T, s Store) {
	now, l := time.Now(), limits(1, 0)
	th := NewThread()
	record(t, s, reply(th, now, 3000, l))
	for range 3 {
		record(t, s, reply(th, now, 3000, l)) // crossed, then blocked
	}
	setOverride(t, s, th, policy.OverrideAllow, 0)
	r := reply(th, now, 3000, l)
	r.Links = []policy.Key{NewKey()}
	if got := record(t, s, r); got.Override != policy.OverrideAllow {
		t.Fatalf("reply under allow: %+v", got)
	}
	if got := resolve(t, s, r.Links...); got[0] != th {
		t.Errorf("link of a reply let through by allow = %q, want %s", got[0], th)
	}
}
