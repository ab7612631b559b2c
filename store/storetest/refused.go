package storetest

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// testAutoReplyWritesNothing: an auto-reply is read, never written. One
// to a thread the store does not know leaves no thread behind (it is not
// listed and Thread does not find it); one to a known thread answers that
// thread's override, block and window and changes nothing in it.
func testAutoReplyWritesNothing(t *testing.T, s Store) {
	now, l := time.Now(), limits(1, 0)
	stray := NewThread()
	auto := reply(stray, now, 101, l)
	auto.Kind, auto.Sender = policy.KindAutoReply, "away@example.org"
	want(t, "auto-reply to an unknown thread", record(t, s, auto), policy.StatusNoted, 0, 0)
	if _, err := s.Thread(ctx(t), stray, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Thread(%s) after an auto-reply to it = %v, want ErrNotFound", stray, err)
	}
	if got := ids(threads(t, s, now, 0)); slices.Contains(got, stray) {
		t.Errorf("Threads lists %s, which only an auto-reply named", stray)
	}

	th := NewThread()
	record(t, s, reply(th, now, 3000, l))
	record(t, s, reply(th, now, 3000, l)) // crosses
	before := info(t, s, th, now)
	auto = reply(th, now.Add(time.Second), 5000, l)
	auto.Kind, auto.Sender = policy.KindAutoReply, "away@example.org"
	got := record(t, s, auto)
	want(t, "auto-reply to a blocked thread", got, policy.StatusNoted, 1, 3000)
	if got.BlockTTL <= 0 {
		t.Errorf("auto-reply to a blocked thread: BlockTTL %v, want the block's", got.BlockTTL)
	}
	after := info(t, s, th, now)
	after.BlockTTL = before.BlockTTL
	if !reflect.DeepEqual(before, after) {
		t.Errorf("an auto-reply changed its thread:\nbefore %+v\nafter  %+v", before, after)
	}
}

// testSendersCapped: a thread keeps at most store.MaxSenders senders,
// the first ones to write; a sender it keeps is updated however full it
// is; a sender is kept to its first store.MaxSenderLen bytes.
func testSendersCapped(t *testing.T, s Store) {
	th, now, l := NewThread(), time.Now(), limits(1, 0)
	send := func(sender string) policy.Tally {
		r := reply(th, now, 3000, l)
		r.Sender = sender
		return record(t, s, r)
	}
	send("first@example.org")   // counted
	send("crosser@example.org") // crosses
	w := map[string]string{"first@example.org": "counted", "crosser@example.org": "crossed"}
	for i := range store.MaxSenders + 40 {
		a := fmt.Sprintf("s%04d@example.org", i)
		if got := send(a); got.Status != policy.StatusBlocked {
			t.Fatalf("reply %d: %s, want blocked", i, got.Status)
		}
		if len(w) < store.MaxSenders {
			w[a] = "blocked"
		}
	}
	send("first@example.org") // kept: its status follows its last message
	w["first@example.org"] = "blocked"
	if got := info(t, s, th, now).Senders; !maps.Equal(got, w) {
		extra, missing := 0, 0
		for k := range got {
			if _, ok := w[k]; !ok {
				extra++
			}
		}
		for k := range w {
			if _, ok := got[k]; !ok {
				missing++
			}
		}
		t.Errorf("Senders: %d kept (%d not expected, %d missing), want the first %d", len(got), extra, missing, store.MaxSenders)
	}

	long := NewThread()
	r := reply(long, now, 3000, l)
	r.Sender = strings.Repeat("x", 1900) + "@example.org"
	record(t, s, r)
	ti := info(t, s, long, now)
	cut := strings.Repeat("x", store.MaxSenderLen)
	if _, ok := ti.Senders[cut]; !ok || len(ti.Senders) != 1 {
		t.Errorf("a 1,912-byte sender kept as %d senders of lengths %v, want one of its first %d bytes",
			len(ti.Senders), lens(ti.Senders), store.MaxSenderLen)
	}
	if ti.Sender != cut {
		t.Errorf("thread's sender kept at %d bytes, want its first %d", len(ti.Sender), store.MaxSenderLen)
	}
}

func lens(m map[string]string) []int {
	var out []int
	for k := range m {
		out = append(out, len(k))
	}
	return out
}

// testBlockedCount: a store that counts its blocked threads
// (store.BlockCounter) counts a storm's block and an operator's block
// override, not a thread an allow override lets through, the storm's
// block again once the allow is gone, nothing of a reset thread, and a
// block no longer once it has run out.
func testBlockedCount(t *testing.T, s Store) {
	bc, ok := s.(store.BlockCounter)
	if !ok {
		t.Skip("the store does not count blocked threads")
	}
	count := func(what string, want int) {
		t.Helper()
		if got, err := bc.Blocked(ctx(t), time.Now()); err != nil || got != want {
			t.Errorf("%s: Blocked = %d, %v, want %d", what, got, err, want)
		}
	}
	storm := func(l policy.Limits) policy.ThreadID {
		th := NewThread()
		record(t, s, reply(th, time.Now(), 3000, l))
		if got := record(t, s, reply(th, time.Now(), 3000, l)); got.Status != policy.StatusCrossed {
			t.Fatalf("second reply: %+v, want crossed", got)
		}
		return th
	}
	count("a new store", 0)
	a := storm(limits(1, 0))
	count("a storm", 1)
	b := NewThread()
	record(t, s, reply(b, time.Now(), 3000, limits(10, 0)))
	setOverride(t, s, b, policy.OverrideBlock, 0)
	count("a storm and a block override", 2)
	setOverride(t, s, a, policy.OverrideAllow, time.Hour)
	count("the storm allowed", 1)
	setOverride(t, s, a, policy.OverrideNone, 0)
	count("the allow taken back", 2)
	if err := s.Reset(ctx(t), b); err != nil {
		t.Fatal(err)
	}
	count("the overridden thread reset", 1)
	short := limits(1, 0)
	short.BlockFor = 300 * time.Millisecond
	storm(short)
	count("a short storm", 2)
	eventually(t, "the short block ran out of the count", func() bool {
		n, err := bc.Blocked(ctx(t), time.Now())
		return err == nil && n == 1
	})
}
