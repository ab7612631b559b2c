package history_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

const listAddr = "all-staff@example.org"

// site is a store and the history kept beside it, as the daemon wires
// them.
type site struct {
	st interface {
		store.Store
		store.Admin
	}
	h history.Store
}

func memorySite() site { return site{store.NewMemory(), history.NewMemory(0)} }

// backends are the sites the recorder runs on: the memory store and a
// real Redis.
func backends(t *testing.T) map[string]func(t *testing.T) site {
	return map[string]func(t *testing.T) site{
		"memory": func(*testing.T) site { return memorySite() },
		"redis": func(t *testing.T) site {
			r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{redisenv.Start(t)}, Timeout: 2 * time.Second, Prefix: "sg:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return site{r, history.NewRedis(r.Client(), r.Keys())}
		},
	}
}

// node is one mail node: a filter on the shared store whose decisions go
// to its own recorder, as the daemon's observer sends them.
type node struct {
	f   *milter.Filter
	rec *history.Recorder
}

type noter struct{ rec *history.Recorder }

func (o noter) Decided(d milter.Decision, m *milter.Message) {
	if d.Stored {
		o.rec.Note(history.Note{Thread: d.Thread, Rule: d.Rule, Action: d.Action, Kind: d.Kind, QueueID: m.QueueID,
			Sender: m.Sender, Subject: d.Subject, Lists: d.Lists, Audience: d.Audience, Count: d.Count,
			Delivered: d.Delivered, Limits: d.Limits, Time: time.Now()})
	}
}

func (noter) StoreCall(string, time.Duration, error) {}

func newNode(t *testing.T, s site, name string, maxReplies int) *node {
	return newNodeWith(t, s, name, maxReplies, policy.ConfigReject)
}

func newNodeWith(t *testing.T, s site, name string, maxReplies int, action policy.ConfigAction) *node {
	t.Helper()
	cfg := milter.Defaults()
	cfg.Policy.Limits.MaxReplies = maxReplies
	cfg.Policy.Action = action
	cfg.Lists = map[string]int{listAddr: 3000}
	f, err := milter.NewFilter(cfg, s.st, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := history.Defaults()
	rc.Node, rc.Limits, rc.Retention, rc.Flush = name, cfg.Policy.Limits, time.Hour, 50*time.Millisecond
	rec, err := history.NewRecorder(rc, s.h, s.st, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.SetObserver(noter{rec})
	return &node{f: f, rec: rec}
}

func (n *node) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !n.rec.Close(ctx) {
		t.Fatal("Close: not everything was written")
	}
	if e := n.rec.Stats.WriteErrors.Load(); e != 0 {
		t.Fatalf("%d write errors", e)
	}
}

func original(root, qid string) *milter.Message {
	return &milter.Message{QueueID: qid, Sender: "boss@example.org", Rcpts: []string{listAddr},
		Headers: policy.Headers{MessageID: "<" + root + ">", Subject: "Budget <b>2027</b>", To: []string{listAddr}}}
}

func reply(i int, root, qid string) *milter.Message {
	return &milter.Message{QueueID: qid, Sender: fmt.Sprintf("user%d@example.org", i), Rcpts: []string{listAddr, "boss@example.org"},
		Headers: policy.Headers{MessageID: fmt.Sprintf("<r%d.%s>", i, root), InReplyTo: "<" + root + ">",
			References: "<" + root + ">", Subject: "Re: Budget <b>2027</b>", To: []string{listAddr}}}
}

// TestStormIsRecorded: a storm's original and replies on two nodes give
// one entry with the store's counts and senders, the list, and the queue
// ids of what each node let through, named by node; refused replies have
// none.
func TestStormIsRecorded(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			mx1, mx2 := newNode(t, s, "mx1", 3), newNode(t, s, "mx2", 3)
			ctx := context.Background()
			root := fmt.Sprintf("storm.%d@example.org", time.Now().UnixNano())
			orig := mx1.f.Decide(ctx, original(root, "Q0"))
			want := []string{"accept", "accept", "accept", "reject", "reject"}
			for i := range 5 {
				n := mx1
				if i >= 2 {
					n = mx2
				}
				d := n.f.Decide(ctx, reply(i, root, fmt.Sprintf("Q%d", i+1)))
				if string(d.Action) != want[i] || d.Thread != orig.Thread {
					t.Fatalf("reply %d: %s %s in %s", i, d.Action, d.Rule, d.Thread)
				}
			}
			mx1.close(t)
			mx2.close(t)

			hs := s.h
			e, err := hs.Get(ctx, orig.Thread)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.st.Thread(ctx, orig.Thread, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !e.IsStorm() || e.StormRule != string(policy.RuleMaxReplies) || e.Accepted != 3 || e.Refused != 2 ||
				e.Accepted != info.Accepted || e.Refused != info.Refused || e.Audience != info.Audience || e.Audience < 3000 {
				t.Errorf("entry %+v; the store says accepted %d refused %d", e, info.Accepted, info.Refused)
			}
			if e.Subject != "Budget <b>2027</b>" || e.Sender != "boss@example.org" || !slices.Equal(e.Lists, []string{listAddr}) {
				t.Errorf("subject %q sender %q lists %q", e.Subject, e.Sender, e.Lists)
			}
			if len(e.Senders) != len(info.Senders) || e.Senders["user4@example.org"] != info.Senders["user4@example.org"] || len(e.Senders) < 5 {
				t.Errorf("senders %v, the store's %v", e.Senders, info.Senders)
			}
			var got []string
			for _, r := range e.Queued {
				if r.Status != history.QueueAccepted {
					t.Errorf("queue ref %+v: want accepted", r)
				}
				got = append(got, r.Node+"/"+r.ID+"/"+r.Kind)
			}
			slices.Sort(got)
			if w := []string{"mx1/Q0/original", "mx1/Q1/reply", "mx1/Q2/reply", "mx2/Q3/reply"}; !slices.Equal(got, w) {
				t.Errorf("queue ids %v, want %v", got, w)
			}
			if e.FirstSeen.IsZero() || e.LastSeen.Before(e.FirstSeen) || e.StormAt.Before(e.FirstSeen) {
				t.Errorf("times: first %s last %s storm %s", e.FirstSeen, e.LastSeen, e.StormAt)
			}
		})
	}
}

// TestNearMissIsRecorded: a thread that reaches report.near_miss of
// max_replies and is never blocked is an entry without StormAt; a thread
// below it and small mail are not kept (their queue ids are, for the
// large-audience thread).
func TestNearMissIsRecorded(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			mx := newNode(t, s, "mx1", 4) // half of 4: the 2nd reply is a near miss
			ctx := context.Background()
			near := fmt.Sprintf("near.%d@example.org", time.Now().UnixNano())
			quiet := "quiet." + near
			dn := mx.f.Decide(ctx, original(near, "N0"))
			dq := mx.f.Decide(ctx, original(quiet, "Q0"))
			mx.f.Decide(ctx, reply(1, near, "N1"))
			mx.f.Decide(ctx, reply(2, near, "N2"))
			mx.f.Decide(ctx, reply(1, quiet, "Q1"))
			small := mx.f.Decide(ctx, &milter.Message{QueueID: "S0", Sender: "a@example.org", Rcpts: []string{"b@example.org"},
				Headers: policy.Headers{MessageID: "<small@example.org>", Subject: "hi"}})
			mx.close(t)

			hs := s.h
			e, err := hs.Get(ctx, dn.Thread)
			if err != nil {
				t.Fatal(err)
			}
			if e.IsStorm() || e.NearMissAt.IsZero() || e.Accepted != 2 || e.Refused != 0 || len(e.Queued) != 3 {
				t.Errorf("near miss entry %+v", e)
			}
			if _, err := hs.Get(ctx, dq.Thread); err == nil {
				t.Error("a thread below report.near_miss has an entry")
			}
			if refs, err := hs.Queued(ctx, dq.Thread); err != nil || len(refs) != 2 {
				t.Errorf("quiet thread's queue ids: %+v, %v", refs, err)
			}
			if small.Thread != "" {
				if refs, _ := hs.Queued(ctx, small.Thread); len(refs) != 0 {
					t.Errorf("small mail noted: %+v", refs)
				}
			}
			all, err := hs.List(ctx, time.Now().Add(-time.Hour), 0)
			if err != nil || len(all) != 1 || all[0].Thread != dn.Thread {
				t.Errorf("List: %+v, %v: want the near miss only", all, err)
			}
		})
	}
}

// TestNearMissUsesTheListsLimits: a list's own max_replies (4, the site's
// is 10) makes its thread's 2nd reply a near miss, as the site's limit
// would not.
func TestNearMissUsesTheListsLimits(t *testing.T) {
	s := memorySite()
	cfg := milter.Defaults()
	cfg.Lists = map[string]int{listAddr: 3000}
	cfg.ListPolicies = map[string]policy.ListPolicy{listAddr: {Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 4}}}
	f, err := milter.NewFilter(cfg, s.st, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := history.Defaults()
	rc.Node, rc.Limits, rc.Retention, rc.Flush = "mx1", cfg.Policy.Limits, time.Hour, 50*time.Millisecond
	rec, err := history.NewRecorder(rc, s.h, s.st, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.SetObserver(noter{rec})
	mx, ctx := &node{f: f, rec: rec}, context.Background()
	root := fmt.Sprintf("list.%d@example.org", time.Now().UnixNano())
	d := mx.f.Decide(ctx, original(root, "L0"))
	mx.f.Decide(ctx, reply(1, root, "L1"))
	mx.f.Decide(ctx, reply(2, root, "L2"))
	mx.close(t)
	e, err := s.h.Get(ctx, d.Thread)
	if err != nil || e.IsStorm() || e.NearMissAt.IsZero() {
		t.Errorf("entry %+v, %v: want a near miss under the list's max_replies 4", e, err)
	}
}

// TestHeldRepliesAreRecordedAsHeld: with policy.action hold, the replies
// past the limit are in the MTA's hold queue: their queue ids are kept
// with status held, beside the accepted ones.
func TestHeldRepliesAreRecordedAsHeld(t *testing.T) {
	s := memorySite()
	mx := newNodeWith(t, s, "mx1", 1, policy.ConfigHold)
	ctx := context.Background()
	root := fmt.Sprintf("hold.%d@example.org", time.Now().UnixNano())
	orig := mx.f.Decide(ctx, original(root, "H0"))
	for i := range 3 {
		mx.f.Decide(ctx, reply(i, root, fmt.Sprintf("H%d", i+1)))
	}
	mx.close(t)
	e, err := s.h.Get(ctx, orig.Thread)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range e.Queued {
		got = append(got, r.ID+"/"+r.Status)
	}
	if w := []string{"H0/accepted", "H1/accepted", "H2/held", "H3/held"}; !slices.Equal(got, w) || !e.IsStorm() {
		t.Errorf("queue ids %v, want %v; storm %v", got, w, e.IsStorm())
	}
}

// TestNotableStaysNotable: a thread an operator allowed is kept; once the
// override is gone its replies, below report.near_miss, still update its
// entry.
func TestNotableStaysNotable(t *testing.T) {
	s := memorySite()
	mx := newNode(t, s, "mx1", 10)
	defer mx.close(t)
	hs := s.h
	ctx := context.Background()
	root := fmt.Sprintf("allow.%d@example.org", time.Now().UnixNano())
	orig := mx.f.Decide(ctx, original(root, "A0"))
	mx.f.Decide(ctx, reply(1, root, "A1"))
	if err := s.st.SetOverride(ctx, orig.Thread, policy.OverrideAllow, 0); err != nil {
		t.Fatal(err)
	}
	if d := mx.f.Decide(ctx, reply(2, root, "A2")); d.Rule != policy.RuleOverrideAllow {
		t.Fatalf("reply 2: %s", d.Rule)
	}
	wait := func(what string, ok func(history.Entry) bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if e, err := hs.Get(ctx, orig.Thread); err == nil && ok(e) {
				return
			}
		}
		e, err := hs.Get(ctx, orig.Thread)
		t.Fatalf("%s: entry %+v, %v", what, e, err)
	}
	wait("after the allow", func(e history.Entry) bool { return e.Allowed == 1 && e.Accepted == 1 })
	if err := s.st.SetOverride(ctx, orig.Thread, policy.OverrideNone, 0); err != nil {
		t.Fatal(err)
	}
	if d := mx.f.Decide(ctx, reply(3, root, "A3")); d.Rule != policy.RuleCounted || d.Count != 2 {
		t.Fatalf("reply 3: %s count %d", d.Rule, d.Count)
	}
	wait("a counted reply after the override", func(e history.Entry) bool { return e.Accepted == 2 && len(e.Queued) == 4 })
}
