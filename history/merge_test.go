package history

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/store"
)

// TestMerge: the entry keeps the earliest times, the larger counters, the
// union of senders (the live status wins) and queue ids, each bounded.
func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	old := &Entry{Thread: "0123456789abcdef", Subject: "old", Sender: "boss@example.org", Lists: []string{"a@example.org"},
		Audience: 3000, FirstSeen: at(0), LastSeen: at(10), NearMissAt: at(5), StormAt: at(8), StormRule: "override_block",
		Accepted: 5, Refused: 9, Allowed: 1, Senders: map[string]string{"x@example.org": "counted", "y@example.org": "counted"},
		Queued: []QueueRef{{Node: "mx1", ID: "A", Time: at(0)}, {Node: "mx1", ID: "B", Time: at(3)}}}
	live := &store.ThreadInfo{Subject: "live " + strings.Repeat("é", TextMax), Sender: "boss@example.org",
		Audience: 2000, FirstSeen: at(1), LastSeen: at(20), StormAt: at(9), StormRule: "max_replies",
		Accepted: 2, Refused: 12, Allowed: 0, Senders: map[string]string{"y@example.org": "blocked", "z@example.org": "blocked"}}
	queued := []QueueRef{{Node: "mx1", ID: "B", Time: at(3)}, {Node: "mx2", ID: "B", Time: at(2)}, {Node: "mx1", ID: "C", Time: at(11)}}
	e := Merge("0123456789abcdef", old, live, queued)
	switch {
	case len([]rune(e.Subject)) != TextMax || !strings.HasPrefix(e.Subject, "live "):
		t.Errorf("subject %q: want the live one, cut to %d runes", e.Subject, TextMax)
	case e.Audience != 3000 || e.Accepted != 5 || e.Refused != 12 || e.Allowed != 1:
		t.Errorf("counters %+v: want the larger of each", e)
	case !e.FirstSeen.Equal(at(0)) || !e.LastSeen.Equal(at(20)) || !e.NearMissAt.Equal(at(5)):
		t.Errorf("times %+v", e)
	case !e.StormAt.Equal(at(8)) || e.StormRule != "override_block":
		t.Errorf("storm %s %s: want the first block on record", e.StormAt, e.StormRule)
	case len(e.Senders) != 3 || e.Senders["y@example.org"] != "blocked":
		t.Errorf("senders %v", e.Senders)
	}
	var ids []string
	for _, r := range e.Queued {
		ids = append(ids, r.Node+"/"+r.ID)
	}
	if got := strings.Join(ids, " "); got != "mx1/A mx2/B mx1/B mx1/C" {
		t.Errorf("queue ids %s: want each once (by node and id), oldest first", got)
	}
	if len(old.Senders) != 2 || len(old.Queued) != 2 {
		t.Error("Merge changed the entry before")
	}

	// Bounds: senders and queue ids.
	big := &store.ThreadInfo{Senders: map[string]string{}}
	var refs []QueueRef
	for i := range MaxSenders + 10 {
		big.Senders[fmt.Sprintf("s%04d@example.org", i)] = "counted"
	}
	for i := range MaxQueueRefs + 10 {
		refs = append(refs, QueueRef{Node: "mx1", ID: fmt.Sprint(i), Time: at(i)})
	}
	e = Merge("0123456789abcdef", nil, big, refs)
	if len(e.Senders) != MaxSenders || len(e.Queued) != MaxQueueRefs || e.Queued[0].ID != "0" {
		t.Errorf("bounds: %d senders, %d queue ids starting %s", len(e.Senders), len(e.Queued), e.Queued[0].ID)
	}
	// The live thread alone, no storm: a near miss's facts.
	e = Merge("0123456789abcdef", nil, &store.ThreadInfo{Accepted: 3, FirstSeen: at(1), LastSeen: at(2)}, nil)
	if e.IsStorm() || e.Accepted != 3 || e.Queued != nil {
		t.Errorf("live only: %+v", e)
	}
}
