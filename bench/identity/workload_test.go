package identity

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestReferences: the References lists are what the clients write, and
// every id is a message id (has an @: ids without one are not threaded on).
func TestReferences(t *testing.T) {
	check := func(name string, refs []string, first, last string, n int) {
		t.Helper()
		if len(refs) != n || refs[0] != first || refs[len(refs)-1] != last {
			t.Errorf("%s: %d ids, %q ... %q; want %d, %q ... %q", name, len(refs), refs[0], refs[len(refs)-1], n, first, last)
		}
		seen := map[string]bool{}
		for _, id := range refs {
			if !strings.Contains(id, "@") || seen[id] {
				t.Errorf("%s: id %q without @ or twice", name, id)
			}
			seen[id] = true
		}
	}
	check("reply to the root", FullRefs(nil, "root@x"), "root@x", "root@x", 1)
	check("reply to a reply", FullRefs([]string{"root@x"}, "r1@x"), "root@x", "r1@x", 2)
	check("60 ids", PaddedRefs([]string{"root@x"}, "r1@x", "m@x"), "root@x", "r1@x", MaxRefs)
	var long []string
	for i := range 80 {
		long = append(long, "r"+strings.Repeat("x", i)+"@x")
	}
	check("a long chain, cut", FullRefs(long, "p@x"), long[0], "p@x", MaxRefs)
	check("a long chain, padded", PaddedRefs(long, "p@x", "m@x"), long[0], "p@x", MaxRefs)
}

// TestMix: the shares of the mix, and replies answer their thread: the
// first References id is the root, except after an iPhone reply.
func TestMix(t *testing.T) {
	x := NewMix()
	r := rand.New(rand.NewPCG(1, 2))
	var n [NumClasses]int
	const total = 20000
	for seq := range uint64(total) {
		m, done := x.Next(r, seq)
		n[m.Class]++
		if m.Class.Large() != slices.Contains(m.Rcpts, ListAddr) {
			t.Fatalf("%s to %v", m.Class, m.Rcpts)
		}
		switch m.Class {
		case RefsRoot:
			if len(m.Refs) != 1 || !strings.HasPrefix(m.Refs[0], "root-") {
				t.Fatalf("reply to the root: References %v", m.Refs)
			}
		case IPhone:
			if len(m.Refs) != 1 {
				t.Fatalf("iPhone reply: References %v", m.Refs)
			}
		case LongRefs:
			if len(m.Refs) != MaxRefs {
				t.Fatalf("60 References: %d", len(m.Refs))
			}
		}
		done(seq%3 != 0) // two in three let through
	}
	t.Logf("classes: %v", n)
	small := n[SmallNew] + n[SmallReply]
	if small < total*93/100 || small > total*97/100 {
		t.Errorf("small mail %d of %d, want about 95 %%: %v", small, total, n)
	}
	for c := Original; c < NumClasses; c++ {
		if n[c] == 0 {
			t.Errorf("no %s in %d messages: %v", c, total, n)
		}
	}
	if o := n[Original]; o < total*5/100/ThreadLen/2 {
		t.Errorf("%d originals in %d messages, want about one per %d large ones: %v", o, total, ThreadLen, n)
	}
}
