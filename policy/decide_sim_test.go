package policy

import (
	"fmt"
	"testing"
	"time"
)

// refStore is a reference model of the store's atomic Record step, written
// from the contract in types.go and store/store.go: a reply is counted
// unless it crosses a limit (Crossed, limits.go: the one home of that
// rule); the one that crosses is refused and blocks the thread for
// BlockFor; a message-id already counted in the window is a duplicate,
// even on a blocked thread.
type refStore struct {
	threads map[ThreadID]*refThread
}

type refThread struct {
	counted      []refEntry
	blockedUntil time.Time
	override     Override
}

type refEntry struct {
	msg Key
	at  time.Time
	aud int
}

func (s *refStore) thread(th ThreadID) *refThread {
	if s.threads == nil {
		s.threads = make(map[ThreadID]*refThread)
	}
	if s.threads[th] == nil {
		s.threads[th] = &refThread{}
	}
	return s.threads[th]
}

func (s *refStore) record(th ThreadID, msg Key, kind Kind, aud int, now time.Time, l Limits) *Tally {
	t := s.thread(th)
	kept := t.counted[:0]
	for _, e := range t.counted {
		if now.Sub(e.at) < l.Window {
			kept = append(kept, e)
		}
	}
	t.counted = kept
	tally := &Tally{Override: t.override}
	for _, e := range t.counted {
		tally.Count++
		tally.Delivered += int64(e.aud)
	}
	if t.override != OverrideNone || kind != KindReply {
		tally.Status = StatusNoted
		return tally
	}
	for _, e := range t.counted {
		if msg != "" && e.msg == msg {
			tally.Status = StatusDuplicate
			return tally
		}
	}
	if now.Before(t.blockedUntil) {
		tally.Status, tally.BlockTTL = StatusBlocked, t.blockedUntil.Sub(now)
		return tally
	}
	if tally.Crossed = Crossed(l, Window{Count: tally.Count, Delivered: tally.Delivered}, aud); tally.Crossed != "" {
		t.blockedUntil = now.Add(l.BlockFor)
		tally.Status, tally.BlockTTL = StatusCrossed, l.BlockFor
		return tally
	}
	t.counted = append(t.counted, refEntry{msg, now, aud})
	tally.Status = StatusCounted
	tally.Count++
	tally.Delivered += int64(aud)
	return tally
}

// step is one message of a simulated storm.
type step struct {
	at       time.Duration // since the start
	msg      string        // message-id ("" for none)
	aud      int
	kind     Kind     // "" means a reply
	mode     Mode     // site mode for this message
	override Override // operator override set just before this message
	want     Action
	rule     Rule
}

func TestDecideSimulation(t *testing.T) {
	limits := func(maxReplies int, budget int64, window, blockFor time.Duration) Config {
		c := Defaults()
		c.Limits = Limits{MaxReplies: maxReplies, DeliveryBudget: budget, Window: window, BlockFor: blockFor}
		return c
	}
	const big = 5000
	ok := func(at time.Duration, msg string) step {
		return step{at: at, msg: msg, aud: big, want: ActionAccept, rule: RuleCounted}
	}
	no := func(at time.Duration, msg string, rule Rule) step {
		return step{at: at, msg: msg, aud: big, want: ActionReject, rule: rule}
	}
	m := time.Minute
	tests := []struct {
		name  string
		c     Config
		steps []step
	}{
		{"threshold exactly at N: the Nth passes, N+1 is the storm", limits(3, 0, time.Hour, 6*time.Hour), []step{
			{msg: "orig", aud: big, kind: KindOriginal, want: ActionAccept, rule: RuleOriginal},
			ok(1*m, "r1"), ok(2*m, "r2"), ok(3*m, "r3"),
			no(4*m, "r4", RuleMaxReplies),
			no(5*m, "r5", RuleBlocked),
		}},
		{"threshold 1", limits(1, 0, time.Hour, time.Hour), []step{
			ok(0, "r1"), no(1*m, "r2", RuleMaxReplies),
		}},
		{"budget exactly reached passes, crossing it is the storm", limits(0, 10000, time.Hour, time.Hour), []step{
			ok(0, "r1"), ok(1*m, "r2"), // 5000 + 5000 = 10000 <= budget
			no(2*m, "r3", RuleDeliveryBudget),
		}},
		{"budget crossed by one big reply", limits(0, 10000, time.Hour, time.Hour), []step{
			{at: 0, msg: "r1", aud: 7500, want: ActionAccept, rule: RuleCounted},
			{at: m, msg: "r2", aud: 2501, want: ActionReject, rule: RuleDeliveryBudget},
			{at: 2 * m, msg: "r3", aud: 1, want: ActionAccept, rule: RuleSmallAudience}, // reply to the sender only
		}},
		{"NHS: 850,000 mailboxes, default budget", Defaults(), []step{
			{msg: "orig", aud: 850000, kind: KindOriginal, want: ActionAccept, rule: RuleOriginal},
			{at: m, msg: "r1", aud: 850000, want: ActionAccept, rule: RuleCounted},
			{at: 2 * m, msg: "r2", aud: 850001, want: ActionReject, rule: RuleDeliveryBudget},
			{at: 3 * m, msg: "r3", aud: 850000, want: ActionReject, rule: RuleBlocked},
		}},
		{"window slides: old replies stop counting", limits(3, 0, time.Hour, 6*time.Hour), []step{
			ok(0, "r1"), ok(10*m, "r2"), ok(20*m, "r3"),
			no(59*m, "r4", RuleMaxReplies), // r1 still inside the window
		}},
		{"window slides: exactly one window later", limits(3, 0, time.Hour, 6*time.Hour), []step{
			ok(0, "r1"), ok(10*m, "r2"), ok(20*m, "r3"),
			ok(60*m, "r4"), // r1 fell out at 60m
			no(65*m, "r5", RuleMaxReplies),
		}},
		{"block expires after block_for", limits(2, 0, 10*m, time.Hour), []step{
			ok(0, "r1"), ok(1*m, "r2"),
			no(2*m, "r3", RuleMaxReplies), // blocked until 62m
			no(30*m, "r4", RuleBlocked),
			no(62*m-time.Second, "r5", RuleBlocked),
			ok(62*m, "r6"),
			ok(63*m, "r7"),
			no(64*m, "r8", RuleMaxReplies),
		}},
		{"duplicate message-id is counted once, passes even when blocked", limits(2, 0, time.Hour, 6*time.Hour), []step{
			ok(0, "a"),
			{at: m, msg: "a", aud: big, want: ActionAccept, rule: RuleDuplicate}, // retry
			ok(2*m, "b"),
			no(3*m, "c", RuleMaxReplies),
			{at: 4 * m, msg: "a", aud: big, want: ActionAccept, rule: RuleDuplicate}, // relay hop of an admitted reply
			no(5*m, "c", RuleBlocked),  // a refused reply is not a duplicate
			no(61*m, "a", RuleBlocked), // out of the window: blocked like any other
		}},
		{"auto-replies and originals never count", limits(2, 0, time.Hour, time.Hour), []step{
			{msg: "orig", aud: big, kind: KindOriginal, want: ActionAccept, rule: RuleOriginal},
			{at: m, msg: "ooo1", aud: big, kind: KindAutoReply, want: ActionReject, rule: RuleAutoReply},
			{at: m, msg: "ooo2", aud: 50, kind: KindAutoReply, want: ActionAccept, rule: RuleSmallAudience},
			ok(2*m, "r1"), ok(3*m, "r2"), no(4*m, "r3", RuleMaxReplies),
		}},
		{"operator overrides on a storm", limits(1, 0, time.Hour, 6*time.Hour), []step{
			ok(0, "r1"), no(m, "r2", RuleMaxReplies),
			{at: 2 * m, msg: "r3", aud: big, override: OverrideAllow, want: ActionAccept, rule: RuleOverrideAllow},
			{at: 3 * m, msg: "r4", aud: big, override: OverrideBlock, want: ActionReject, rule: RuleOverrideBlock},
			{at: 4 * m, msg: "r5", aud: big, override: OverrideNone, want: ActionReject, rule: RuleBlocked},
		}},
		{"monitor mode counts and tags", limits(1, 0, time.Hour, time.Hour), []step{
			{msg: "r1", aud: big, mode: ModeMonitor, want: ActionAccept, rule: RuleCounted},
			{at: m, msg: "r2", aud: big, mode: ModeMonitor, want: ActionTag, rule: RuleMaxReplies},
			{at: 2 * m, msg: "r3", aud: big, mode: ModeOff, want: ActionAccept, rule: RuleModeOff},
			{at: 3 * m, msg: "r4", aud: big, mode: ModeEnforce, want: ActionReject, rule: RuleBlocked},
		}},
	}
	start := time.Date(2016, 11, 14, 8, 29, 0, 0, time.UTC) // a fake clock
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Validate(); err != nil {
				t.Fatal(err)
			}
			var s refStore
			const thread = ThreadID("3f9a0c1d2b4e5f60")
			for i, st := range tt.steps {
				s.thread(thread).override = st.override
				kind := st.kind
				if kind == "" {
					kind = KindReply
				}
				f := Facts{Mode: st.mode, AutoReply: kind == KindAutoReply, Reply: kind != KindOriginal, Audience: st.aud}
				var tally *Tally
				if NeedsStore(tt.c, f) {
					if KindOf(tt.c, f) != kind {
						t.Fatalf("step %d: KindOf = %s, want %s", i, KindOf(tt.c, f), kind)
					}
					tally = s.record(thread, MessageIDKey(st.msg), kind, st.aud, start.Add(st.at), tt.c.Limits)
				}
				v := Decide(tt.c, f, answer(tally))
				if v.Action != st.want || v.Rule != st.rule {
					t.Errorf("step %d (%s at %s, audience %d): %s/%s, want %s/%s (tally %s)",
						i, st.msg, st.at, st.aud, v.Action, v.Rule, st.want, st.rule, fmtTally(tally))
				}
			}
		})
	}
}

func fmtTally(t *Tally) string {
	if t == nil {
		return "none"
	}
	return fmt.Sprintf("%s count=%d delivered=%d", t.Status, t.Count, t.Delivered)
}
