package identity

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Round trips per message class: two nodes of one revision (A and B) share
// one Redis, every connection to it goes through the counting proxy, and
// messages are sent one at a time; what is counted is node B's trips from
// its MAIL to its verdict. Node A plays the other mail node that recorded
// earlier messages of a thread. No queue ids are given, so the report
// recorder writes nothing; the refresher's reads and the Cluster client's
// topology reads are shown apart (Background).

// While counting, the proxy holds each trip's reply for tripDelay (a
// Redis a few milliseconds away: Recorder.Delay), and the daemons wait up
// to countTimeout for Redis, so that neither a loaded machine nor the
// delay turns a round trip into a timeout and a fallback to the memory
// store (which would change the count). Neither changes what a message
// asks of Redis.
const (
	tripDelay    = 5 * time.Millisecond
	countTimeout = 5 * time.Second
)

// step is one message of a scenario.
type step struct {
	node    int // 0: A, 1: B
	mail    Mail
	measure bool
}

// scenario is one row of the round-trip table: the messages that set the
// thread up, then the measured one on node B. ids makes the instance's
// unique message ids ("w" -> "w-3.run@bench.example").
type scenario struct {
	name  string
	steps func(ids func(string) string) []step
}

// measured is the class of the scenario's measured message.
func (sc scenario) measured() Class {
	for _, st := range sc.steps(func(p string) string { return p + "@bench.example" }) {
		if st.measure {
			return st.mail.Class
		}
	}
	return SmallNew
}

const (
	nodeA = 0
	nodeB = 1
)

func from(i int) string { return fmt.Sprintf("user%d@bench.example", i) }

var scenarios = []scenario{
	{"small new mail (2 people)", func(id func(string) string) []step {
		return []step{{nodeB, SmallNewMail(id("s"), from(1), 2), true}}
	}},
	{"small reply (1 person)", func(id func(string) string) []step {
		return []step{{nodeB, SmallReplyMail(id("p"), from(1), id("unseen")), true}}
	}},
	{"large original", func(id func(string) string) []step {
		return []step{{nodeB, OriginalMail(id("o"), from(1)), true}}
	}},
	{"reply-all to the root, warm: this node answered the thread a moment ago", func(id func(string) string) []step {
		root := id("w")
		return []step{
			{nodeA, OriginalMail(root, from(1)), false},
			{nodeB, ReplyMail(RefsRoot, id("w1"), from(2), root, []string{root}), false},
			{nodeB, ReplyMail(RefsRoot, id("w2"), from(3), root, []string{root}), true},
		}
	}},
	{"reply-all to the root, cold: only the other node saw the thread", func(id func(string) string) []step {
		root := id("c")
		return []step{
			{nodeA, OriginalMail(root, from(1)), false},
			{nodeB, ReplyMail(RefsRoot, id("c1"), from(2), root, []string{root}), true},
		}
	}},
	{"reply to the reply the other node just recorded (this node answered the root)", func(id func(string) string) []step {
		root, r1, r2 := id("q"), id("q1"), id("q2")
		return []step{
			{nodeA, OriginalMail(root, from(1)), false},
			{nodeB, ReplyMail(RefsRoot, r1, from(2), root, []string{root}), false},
			{nodeA, ReplyMail(RefsChain, r2, from(3), r1, []string{root, r1}), false},
			{nodeB, ReplyMail(RefsChain, id("q3"), from(4), r2, []string{root, r1, r2}), true},
		}
	}},
	{"reply to a reply, every ancestor recorded by the other node", func(id func(string) string) []step {
		root, r1, r2 := id("d"), id("d1"), id("d2")
		return []step{
			{nodeA, OriginalMail(root, from(1)), false},
			{nodeA, ReplyMail(RefsRoot, r1, from(2), root, []string{root}), false},
			{nodeA, ReplyMail(RefsChain, r2, from(3), r1, []string{root, r1}), false},
			{nodeB, ReplyMail(RefsChain, id("d3"), from(4), r2, []string{root, r1, r2}), true},
		}
	}},
	{"iPhone reply (References = parent only) to a reply from the other node", func(id func(string) string) []step {
		root, r1 := id("e"), id("e1")
		return []step{
			{nodeA, OriginalMail(root, from(1)), false},
			{nodeA, ReplyMail(RefsRoot, r1, from(2), root, []string{root}), false},
			{nodeB, ReplyMail(IPhone, id("e2"), from(3), r1, []string{r1}), true},
		}
	}},
	{"60 References (root, 58 unseen, parent from the other node)", func(id func(string) string) []step {
		root, r1 := id("l"), id("l1")
		return []step{
			{nodeA, OriginalMail(root, from(1)), false},
			{nodeA, ReplyMail(RefsRoot, r1, from(2), root, []string{root}), false},
			{nodeB, ReplyMail(LongRefs, id("l2"), from(3), r1, PaddedRefs([]string{root}, r1, id("old"))), true},
		}
	}},
}

// count is one measured message's trips.
type count struct {
	path       []Trip // on the message's path
	background []Trip // in its window, but Background
}

func (c count) requests() int { return len(c.path) }
func (c count) rounds() int   { return Rounds(c.path) }

// describe lists the trips, rounds separated by " → ", the trips of one
// round (one per master, sent together) by " | " in name order.
func describe(trips []Trip) string {
	if len(trips) == 0 {
		return "none"
	}
	var rounds []string
	var round []string
	var end time.Time
	for i, t := range trips {
		if i > 0 && t.Start.After(end) {
			slices.Sort(round)
			rounds = append(rounds, strings.Join(round, " | "))
			round = nil
		}
		if i == 0 || t.End.After(end) {
			end = t.End
		}
		round = append(round, t.Names())
	}
	slices.Sort(round)
	rounds = append(rounds, strings.Join(round, " | "))
	return strings.Join(rounds, " → ")
}

// roundTrips runs every scenario instances times on a fresh Redis (or
// Cluster) with two fresh daemons of bin, and returns the counts by
// scenario, and node B's trips outside its messages. run names the
// message ids: the same run gives the same ids, so the same keys and, on
// a Cluster, the same masters.
func roundTrips(t *testing.T, bin string, cluster bool, instances int, run string) (counts [][]count, outside []Trip) {
	rec := NewRecorder()
	rec.Delay = tripDelay
	rs := startRedisSet(t, cluster, rec)
	nodes := []*daemon{
		startDaemon(t, bin, "A", rs, cluster, rec, countTimeout),
		startDaemon(t, bin, "B", rs, cluster, rec, countTimeout),
	}
	sess := []*session{newSession(nodes[nodeA].addr), newSession(nodes[nodeB].addr)}
	defer sess[nodeA].close()
	defer sess[nodeB].close()
	begin := time.Now()

	// Warm up: large originals through both nodes until each node has a
	// connection to every server and every server has run the script
	// (NOSCRIPT and SCRIPT LOAD are once per server, not per message).
	for i := 0; ; i++ {
		if i >= 300 {
			t.Fatalf("warm-up: after %d originals, some node has no trip to some server, or a server never ran a script: %v", i, warmState(rec, rs, begin))
		}
		m := OriginalMail(fmt.Sprintf("warm-%d.%s@bench.example", i, run), from(i))
		if v, _, err := sess[i%2].send(m); err != nil || !delivered(v) {
			t.Fatalf("warm-up original %d: %s %v", i, v, err)
		}
		if i%2 == 1 && warmState(rec, rs, begin) == "" {
			break
		}
	}

	counts = make([][]count, len(scenarios))
	var windows [][2]time.Time
	for inst := range instances {
		for si, sc := range scenarios {
			id := func(p string) string { return fmt.Sprintf("%s-%d-%d.%s@bench.example", p, si, inst, run) }
			for k, st := range sc.steps(id) {
				from := time.Now()
				v, _, err := sess[st.node].send(st.mail)
				to := time.Now()
				if err != nil || !delivered(v) {
					t.Fatalf("%s, message %d (%s): %s %v (the scenario keeps every thread below max_replies: nothing may be refused)", sc.name, k+1, st.mail.Class, v, err)
				}
				if st.node == nodeB {
					windows = append(windows, [2]time.Time{from, to})
				}
				if !st.measure {
					continue
				}
				var c count
				for _, tr := range rec.Trips("B", from, to) {
					if Background(tr, "stormguard:") {
						c.background = append(c.background, tr)
					} else {
						c.path = append(c.path, tr)
					}
				}
				counts[si] = append(counts[si], c)
			}
		}
	}
	// Node B's trips outside its messages (after warm-up): what it does
	// on its own timers, or what a message left to do after its verdict.
	for _, tr := range rec.Trips("B", windows[0][0], time.Now()) {
		in := false
		for _, w := range windows {
			in = in || (!tr.Start.Before(w[0]) && !tr.Start.After(w[1]))
		}
		if !in {
			outside = append(outside, tr)
		}
	}
	if errs := rec.Errors(); len(errs) > 0 {
		t.Errorf("proxy: %v", errs)
	}
	if o := rec.Trips("other", begin, time.Now()); len(o) > 0 {
		t.Errorf("%d trips on connections the proxy could not attribute to node A or B, first: %s", len(o), describe(o[:1]))
	}
	for _, d := range nodes {
		if p := d.log.Problems(); len(p) > 0 {
			t.Errorf("node %s logged %d warnings/errors, first: %s", d.node, len(p), p[0])
		}
	}
	return counts, outside
}

// warmState says what is still cold: "" when both nodes have had trips to
// every server and every server has answered a script call without
// NOSCRIPT.
func warmState(rec *Recorder, rs redisSet, since time.Time) string {
	var missing []string
	for _, node := range []string{"A", "B"} {
		seen := map[string]bool{}
		for _, tr := range rec.Trips(node, since, time.Now()) {
			seen[tr.Server] = true
		}
		for _, s := range rs.servers {
			if !seen[s] {
				missing = append(missing, node+" has no trip to "+s)
			}
		}
	}
	script := map[string]bool{}
	for _, node := range []string{"A", "B"} {
		for _, tr := range rec.Trips(node, since, time.Now()) {
			if len(tr.Errs) == 0 && strings.Contains("+"+tr.Names()+"+", "+evalsha+") {
				script[tr.Server] = true
			}
		}
	}
	for _, s := range rs.servers {
		if !script[s] {
			missing = append(missing, s+" has not answered an EVALSHA")
		}
	}
	return strings.Join(missing, "; ")
}

// span formats the smallest and largest of the instances' figures.
func span(cs []count, f func(count) int) string {
	lo, hi := -1, -1
	for _, c := range cs {
		n := f(c)
		if lo < 0 || n < lo {
			lo = n
		}
		if n > hi {
			hi = n
		}
	}
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

// cell is one table cell: "rounds / requests" over the instances.
func cell(cs []count) string {
	return span(cs, count.rounds) + " / " + span(cs, count.requests)
}

// variants lists the distinct trip descriptions of the instances, with how
// many instances had each.
func variants(cs []count) string {
	n := map[string]int{}
	var order []string
	for _, c := range cs {
		d := describe(c.path)
		if bg := describe(c.background); len(c.background) > 0 {
			d += " (+ background: " + bg + ")"
		}
		if n[d] == 0 {
			order = append(order, d)
		}
		n[d]++
	}
	var parts []string
	for _, d := range order {
		s := "`" + d + "`"
		if len(cs) > 1 {
			s += fmt.Sprintf(" ×%d", n[d])
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// summarize counts trips by their command names.
func summarize(trips []Trip) string {
	n := map[string]int{}
	var order []string
	for _, t := range trips {
		k := t.Names()
		if n[k] == 0 {
			order = append(order, k)
		}
		n[k]++
	}
	var parts []string
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}
