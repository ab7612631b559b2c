package policy

import (
	"fmt"
	"slices"
	"testing"
)

// The registered lists of testSite.
const (
	planStaff = "all-staff@example.org" // 850000 members, no policy of its own
	planEng   = "eng@example.org"       // 5000 members: max_replies 3, action hold
	planHR    = "hr@example.org"        // 3000 members: posters comms@, @hr.example.org, login hrbot
	planSmall = "small@example.org"     // 100 members
)

// testSite is a site with four lists, two of them with policies of their
// own, an exempt sender and domain, and site posters by sender and login.
func testSite() *Site {
	s := &Site{
		Config:  Defaults(),
		Mode:    ModeEnforce,
		Lists:   map[string]int{planStaff: 850000, planEng: 5000, planHR: 3000, planSmall: 100},
		Exempt:  Senders{},
		Posters: Senders{},
	}
	s.Exempt.Add("Postmaster@Example.org ", "@trusted.example")
	s.Posters.Add("ceo@example.org", "jdoe")
	s.SetList(planEng, ListPolicy{Limits: map[Rule]int64{RuleMaxReplies: 3}, Action: ConfigHold})
	s.SetList(" HR@Example.org", ListPolicy{Posters: []string{"Comms@Example.org", "@hr.example.org", "hrbot"}})
	return s
}

func TestSitePlan(t *testing.T) {
	gateOn := func(s *Site) { s.Config.Gate = Gate{MinAudience: 10000, Action: ConfigTempfail} }
	split := func(s *Site) { s.Config.SplitEnvelopes = true }
	original := Headers{MessageID: "<o1@example.org>", Subject: "Quarterly figures"}
	reply := Headers{MessageID: "<r1@example.org>", InReplyTo: "<o1@example.org>", Subject: "RE: Quarterly figures"}
	auto := Headers{MessageID: "<a1@example.org>", Subject: "Automatic reply: Quarterly figures", AutoSubmitted: "auto-replied"}
	to := func(h Headers, hdr ...string) Headers { h.To = hdr; return h }
	env := func(sender string, rcpts ...string) Envelope { return Envelope{Sender: sender, Rcpts: rcpts} }
	login := func(e Envelope, user string) Envelope { e.AuthUser = user; return e }
	many := make([]string, 0, MaxLists+4)
	for i := range MaxLists + 4 {
		many = append(many, fmt.Sprintf("l%02d@example.org", i))
	}
	manyLists := func(s *Site) {
		for _, l := range many {
			s.Lists[l] = 200
		}
	}

	type want struct {
		store    bool
		action   Action // the verdict's, with a tally of StatusCounted when store
		rule     Rule
		audience int
		kind     Kind
		lists    []string
		subject  string
		list     string
		gated    bool // Facts.ListGated
		poster   bool // Facts.Poster
		replies  int  // Config.Limits.MaxReplies
		act      ConfigAction
	}
	site := want{replies: 10, act: ConfigReject} // the site's policy
	with := func(w want, f func(*want)) want { f(&w); return w }
	tests := []struct {
		name string
		site func(*Site)
		env  Envelope
		h    Headers
		want want
	}{
		{"mode off", func(s *Site) { s.Mode = ModeOff }, env("ann@example.org", planStaff), reply,
			with(site, func(w *want) { w.action, w.rule, w.audience = ActionAccept, RuleModeOff, 850000 })},
		{"exempt sender, any case", nil, env("postmaster@example.org", planStaff), reply,
			with(site, func(w *want) { w.action, w.rule, w.audience = ActionAccept, RuleExempt, 850000 })},
		{"exempt domain", nil, env("bot@trusted.example", planStaff), reply,
			with(site, func(w *want) { w.action, w.rule, w.audience = ActionAccept, RuleExempt, 850000 })},
		{"small audience", nil, env("ann@example.org", "bob@example.org", "carol@example.org"), reply,
			with(site, func(w *want) { w.action, w.rule, w.audience = ActionAccept, RuleSmallAudience, 2 })},
		{"small list", nil, env("ann@example.org", planSmall), reply,
			with(site, func(w *want) { w.action, w.rule, w.audience = ActionAccept, RuleSmallAudience, 100 })},
		{"original to a large list", nil, env("ann@example.org", planStaff, "boss@example.org"), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 850001, KindOriginal
				w.lists, w.subject = []string{planStaff}, "Quarterly figures"
			})},
		{"reply to a large list", nil, env("ann@example.org", planStaff), reply,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 850000, KindReply
				w.lists, w.subject = []string{planStaff}, "RE: Quarterly figures"
			})},
		{"auto-reply to a large list", nil, env("ann@example.org", planStaff), auto,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionReject, RuleAutoReply, 850000, KindAutoReply
				w.lists, w.subject = []string{planStaff}, "Automatic reply: Quarterly figures"
			})},
		{"auto-reply over its limit below min_audience", nil, env("ann@example.org", planSmall, "x@example.org"), auto,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionReject, RuleAutoReply, 101, KindAutoReply
				w.lists, w.subject = []string{planSmall}, "Automatic reply: Quarterly figures"
			})},
		{"the list's own policy", nil, env("ann@example.org", planEng), reply,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 5000, KindReply
				w.lists, w.subject, w.replies, w.act = []string{planEng}, "RE: Quarterly figures", 3, ConfigHold
			})},
		{"the list's own policy, envelope address in brackets", nil, env("ann@example.org", "<eng@example.org>"), reply,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 5000, KindReply
				w.lists, w.subject, w.replies, w.act = []string{"eng@example.org"}, "RE: Quarterly figures", 3, ConfigHold
			})},
		// all-staff has no policy of its own: it counts as the site's, whose
		// reject is stricter than eng's hold; eng's 3 replies are stricter
		// than the site's 10.
		{"a list without a policy beside one with", nil, env("ann@example.org", planStaff, planEng), reply,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 855000, KindReply
				w.lists, w.subject, w.replies, w.act = []string{planStaff, planEng}, "RE: Quarterly figures", 3, ConfigReject
			})},
		{"a forged header's list lends no policy", nil, env("ann@example.org", planStaff), to(reply, planEng),
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 850000, KindReply
				w.lists, w.subject = []string{planStaff}, "RE: Quarterly figures"
			})},
		{"split_envelopes: the header's list counts", split, env("ann@example.org", "a@example.org"), to(reply, "Eng <ENG@example.org>"),
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 5000, KindReply
				w.subject, w.replies, w.act = "RE: Quarterly figures", 3, ConfigHold
			})},
		{"registered lists once each, at most MaxLists", manyLists, env("ann@example.org", append(append([]string{many[1]}, many...), planStaff)...), reply,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 850000+200*len(many), KindReply
				w.lists, w.subject = append([]string{many[1], many[0]}, many[2:MaxLists]...), "RE: Quarterly figures"
			})},
		{"gate: unlisted sender", gateOn, env("ann@example.org", planSmall, planStaff), original,
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list = ActionTempfail, RuleGate, 850100, "Quarterly figures", planStaff
			})},
		{"gate: the largest list of the header when the envelope has none", func(s *Site) { gateOn(s); split(s) },
			env("ann@example.org", "a@example.org"), to(original, planSmall+", "+planStaff),
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list = ActionTempfail, RuleGate, 850100, "Quarterly figures", planStaff
			})},
		{"gate: poster by sender", gateOn, env("ceo@example.org", planStaff), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind, w.poster = true, ActionAccept, RuleCounted, 850000, KindOriginal, true
				w.lists, w.subject = []string{planStaff}, "Quarterly figures"
			})},
		{"gate: poster by login", gateOn, login(env("ann@example.org", planStaff), "JDoe"), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind, w.poster = true, ActionAccept, RuleCounted, 850000, KindOriginal, true
				w.lists, w.subject = []string{planStaff}, "Quarterly figures"
			})},
		{"gate: below its audience", gateOn, env("ann@example.org", planEng), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 5000, KindOriginal
				w.lists, w.subject, w.replies, w.act = []string{planEng}, "Quarterly figures", 3, ConfigHold
			})},
		{"list posters: stranger", nil, env("ann@example.org", "a@example.org", planHR), original,
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list, w.gated = ActionReject, RuleGate, 3001, "Quarterly figures", planHR, true
			})},
		{"list posters: stranger, small audience", func(s *Site) { s.Lists[planHR] = 2 }, env("ann@example.org", planHR), original,
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list, w.gated = ActionReject, RuleGate, 2, "Quarterly figures", planHR, true
			})},
		{"list posters: the first gated list names the refusal", nil, env("ann@example.org", planStaff, "<HR@example.org>"), original,
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list, w.gated = ActionReject, RuleGate, 853000, "Quarterly figures", "hr@example.org", true
			})},
		{"list posters: by sender", nil, env("comms@example.org", planHR), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 3000, KindOriginal
				w.lists, w.subject = []string{planHR}, "Quarterly figures"
			})},
		{"list posters: by domain", nil, env("Pat@HR.example.org", planHR), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 3000, KindOriginal
				w.lists, w.subject = []string{planHR}, "Quarterly figures"
			})},
		{"list posters: by login", nil, login(env("ann@example.org", planHR), "hrbot"), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 3000, KindOriginal
				w.lists, w.subject = []string{planHR}, "Quarterly figures"
			})},
		{"list posters: a site poster", nil, env("ceo@example.org", planHR), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind, w.poster = true, ActionAccept, RuleCounted, 3000, KindOriginal, true
				w.lists, w.subject = []string{planHR}, "Quarterly figures"
			})},
		{"list posters: exempt", nil, env("postmaster@example.org", planHR), original,
			with(site, func(w *want) { w.action, w.rule, w.audience, w.gated = ActionAccept, RuleExempt, 3000, true })},
		{"list posters: mode monitor tags", func(s *Site) { s.Mode = ModeMonitor }, env("ann@example.org", planHR), original,
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list, w.gated = ActionTag, RuleGate, 3000, "Quarterly figures", planHR, true
			})},
		{"list posters: allowed by one gated list, not by the other", func(s *Site) { s.SetList(planSmall, ListPolicy{Posters: []string{"ann@example.org"}}) },
			env("ann@example.org", "<>", planSmall, planHR), original,
			with(site, func(w *want) {
				w.action, w.rule, w.audience, w.subject, w.list, w.gated = ActionReject, RuleGate, 3100, "Quarterly figures", planHR, true
			})},
		{"list posters: allowed by every gated list", func(s *Site) { s.SetList(planSmall, ListPolicy{Posters: []string{"@hr.example.org"}}) },
			env("pat@hr.example.org", planSmall, planHR), original,
			with(site, func(w *want) {
				w.store, w.action, w.rule, w.audience, w.kind = true, ActionAccept, RuleCounted, 3100, KindOriginal
				w.lists, w.subject = []string{planSmall, planHR}, "Quarterly figures"
			})},
		{"list posters: a forged header's list does not gate", nil, env("ann@example.org", planSmall), to(original, planHR),
			with(site, func(w *want) { w.action, w.rule, w.audience = ActionAccept, RuleSmallAudience, 100 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSite()
			if tt.site != nil {
				tt.site(s)
			}
			p := s.Plan(tt.env, &tt.h)
			v := p.Decide(Answer{Tally: Tally{Status: StatusCounted, Count: 1}})
			w := tt.want
			got := want{p.Store, v.Action, v.Rule, p.Facts.Audience, p.Kind, p.Lists, p.Subject, p.List, p.Facts.ListGated, p.Facts.Poster,
				p.Config.Limits.MaxReplies, p.Config.Action}
			if got.store != w.store || got.action != w.action || got.rule != w.rule || got.audience != w.audience || got.kind != w.kind ||
				!slices.Equal(got.lists, w.lists) || got.subject != w.subject || got.list != w.list || got.gated != w.gated ||
				got.poster != w.poster || got.replies != w.replies || got.act != w.act {
				t.Errorf("plan\n got %+v\nwant %+v", got, w)
			}
			if p.Store != NeedsStore(p.Config, p.Facts) {
				t.Errorf("Store = %v, NeedsStore says %v", p.Store, !p.Store)
			}
			if !p.Store && p.Verdict != v {
				t.Errorf("Verdict %+v, Decide %+v", p.Verdict, v)
			}
			if p.Store {
				// Identify is given the registered lists of either side.
				_, large := s.Config.Audience(tt.env.Rcpts, Parse(tt.h).Recipients, s.Lists)
				if id := Identify(Parse(tt.h), large); !sameIdentity(id, p.Identity) {
					t.Errorf("Identity %+v, want %+v", p.Identity, id)
				}
				if p.Facts.Reply != p.Identity.Reply {
					t.Errorf("Facts.Reply %v, Identity.Reply %v", p.Facts.Reply, p.Identity.Reply)
				}
				if p.Config.Limits.Window != s.Config.Limits.Window || p.Config.Limits.BlockFor != s.Config.Limits.BlockFor {
					t.Errorf("limits %+v: window and block_for are the site's", p.Config.Limits)
				}
			}
		})
	}
}

func sameIdentity(a, b Identity) bool {
	return a.Own == b.Own && a.Root == b.Root && a.RootFrom == b.RootFrom && a.Subject == b.Subject && a.Display == b.Display &&
		a.Reply == b.Reply && slices.Equal(a.Lookup, b.Lookup) && slices.Equal(a.Sources, b.Sources) && slices.Equal(a.Links, b.Links)
}

// TestPlanDecide: a plan that needs the store decides by its answer, under
// the message's policy (its lists' merged); one that does not keeps its
// verdict whatever the answer.
func TestPlanDecide(t *testing.T) {
	reply := Headers{MessageID: "<r1@example.org>", InReplyTo: "<o1@example.org>"}
	crossed := Tally{Status: StatusCrossed, Crossed: RuleMaxReplies}
	tests := []struct {
		name string
		site func(*Site)
		rcpt string
		a    Answer
		want Verdict
	}{
		{"counted", nil, planStaff, Answer{Tally: Tally{Status: StatusCounted}}, Verdict{Action: ActionAccept, Rule: RuleCounted}},
		{"crossed", nil, planStaff, Answer{Tally: crossed}, Verdict{Action: ActionReject, Rule: RuleMaxReplies}},
		{"crossed, the list's action", nil, planEng, Answer{Tally: crossed}, Verdict{Action: ActionHold, Rule: RuleMaxReplies}},
		{"blocked", nil, planStaff, Answer{Tally: Tally{Status: StatusBlocked}}, Verdict{Action: ActionReject, Rule: RuleBlocked}},
		{"override allow", nil, planStaff, Answer{Tally: Tally{Override: OverrideAllow, Status: StatusBlocked}}, Verdict{Action: ActionAccept, Rule: RuleOverrideAllow}},
		{"unusable tally", nil, planStaff, Answer{}, Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"store failed, fail open", nil, planStaff, Answer{Failed: FailOpen}, Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"store failed, fail open, whatever the tally", nil, planStaff, Answer{Tally: crossed, Failed: FailOpen}, Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"store failed, tempfail", nil, planStaff, Answer{Failed: FailTempfail}, Verdict{Action: ActionTempfail, Rule: RuleStoreError}},
		{"store failed, tempfail, the list's hold", nil, planEng, Answer{Failed: FailTempfail}, Verdict{Action: ActionTempfail, Rule: RuleStoreError}},
		{"store failed, tempfail, mode monitor", func(s *Site) { s.Mode = ModeMonitor }, planStaff, Answer{Failed: FailTempfail}, Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"store failed, tempfail, a monitoring list", func(s *Site) { s.SetList(planStaff, ListPolicy{Action: ConfigMonitor}) }, planStaff,
			Answer{Failed: FailTempfail}, Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"no store: small audience", nil, planSmall, Answer{Failed: FailTempfail}, Verdict{Action: ActionAccept, Rule: RuleSmallAudience}},
		{"no store: mode off", func(s *Site) { s.Mode = ModeOff }, planStaff, Answer{Tally: crossed}, Verdict{Action: ActionAccept, Rule: RuleModeOff}},
		{"no store: gate", nil, planHR, Answer{Tally: Tally{Status: StatusCounted}}, Verdict{Action: ActionReject, Rule: RuleGate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSite()
			if tt.site != nil {
				tt.site(s)
			}
			p := s.Plan(Envelope{Sender: "ann@example.org", Rcpts: []string{tt.rcpt}}, &reply)
			if got := p.Decide(tt.a); got != tt.want {
				t.Errorf("Decide(%+v) = %+v, want %+v", tt.a, got, tt.want)
			}
		})
	}
}

func TestSenders(t *testing.T) {
	s := Senders{}
	s.Add(" Ann@Example.org", "@trusted.example", "JDoe", "bob@example.org ")
	tests := []struct {
		in           string
		match, login bool
	}{
		{"ann@example.org", true, true}, // an address entry names a sender and a login
		{"ANN@example.org", true, true},
		{"bob@example.org", true, true},
		{"eve@trusted.example", true, false},
		{"eve@TRUSTED.example", true, false},
		{"eve@sub.trusted.example", false, false},
		{"@trusted.example", true, false}, // an @domain entry names no login
		{"jdoe", true, true},
		{" JDoe ", false, true}, // a login is trimmed, a sender is not
		{"jdoe@example.org", false, false},
		{"eve@example.org", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		if got := s.Match(tt.in); got != tt.match {
			t.Errorf("Match(%q) = %v, want %v", tt.in, got, tt.match)
		}
		if got := s.Login(tt.in); got != tt.login {
			t.Errorf("Login(%q) = %v, want %v", tt.in, got, tt.login)
		}
	}
	var none Senders
	if none.Match("ann@example.org") || none.Login("jdoe") {
		t.Error("an empty set matched")
	}
}

// TestSiteSetList: addresses are lower case and trimmed, posters ready to
// match, and the zero policy removes a list's.
func TestSiteSetList(t *testing.T) {
	var s Site
	s.SetList(" Eng@Example.org ", ListPolicy{Limits: map[Rule]int64{RuleMaxReplies: 3}, Posters: []string{"Comms@Example.org"}})
	lr, ok := s.Policies["eng@example.org"]
	if !ok || lr.Limits[RuleMaxReplies] != 3 || !lr.posters.Match("comms@example.org") {
		t.Fatalf("policies %+v", s.Policies)
	}
	s.SetList("other@example.org", ListPolicy{Action: ConfigHold})
	if lr := s.Policies["other@example.org"]; lr.posters != nil || lr.Action != ConfigHold {
		t.Errorf("a policy without posters: %+v", lr)
	}
	s.SetList("ENG@example.org", ListPolicy{})
	if _, ok := s.Policies["eng@example.org"]; ok || len(s.Policies) != 1 {
		t.Errorf("the zero policy left %+v", s.Policies)
	}
	var empty Site
	empty.SetList("eng@example.org", ListPolicy{}) // removing from nothing
	if empty.Policies != nil {
		t.Errorf("policies %+v", empty.Policies)
	}
}

func TestLargestList(t *testing.T) {
	lists := map[string]int{"a@x": 10, "b@x": 30, "c@x": 30, "z@x": 0}
	tests := []struct {
		rcpts, large []string
		want         string
	}{
		{[]string{"a@x", "<b@x>", "c@x"}, nil, "b@x"},    // the first of the largest
		{[]string{"z@x"}, []string{"b@x"}, "z@x"},        // an envelope list of 0 members beats the header's
		{[]string{"n@x"}, []string{"a@x", "c@x"}, "c@x"}, // else the header's
		{[]string{"n@x"}, nil, ""},
	}
	for _, tt := range tests {
		if got := largestList(tt.rcpts, tt.large, lists); got != tt.want {
			t.Errorf("largestList(%q, %q) = %q, want %q", tt.rcpts, tt.large, got, tt.want)
		}
	}
}

func ExampleSite_Plan() {
	s := &Site{Config: Defaults(), Lists: map[string]int{"all-staff@example.org": 850000}}
	p := s.Plan(Envelope{Sender: "ann@example.org", Rcpts: []string{"all-staff@example.org"}},
		&Headers{MessageID: "<r2@example.org>", InReplyTo: "<r1@example.org>", Subject: "RE: Lunch"})
	fmt.Println(p.Store, p.Kind, p.Lists, p.Config.Limits.MaxReplies)

	// The store counted the reply, and it crossed max_replies.
	fmt.Println(p.Decide(Answer{Tally: Tally{Status: StatusCrossed, Crossed: RuleMaxReplies, Count: 10}}))
	// The store failed, and store.on_error is tempfail.
	fmt.Println(p.Decide(Answer{Failed: FailTempfail}))
	// Output:
	// true reply [all-staff@example.org] 10
	// {reject max_replies }
	// {tempfail store_error }
}

// TestLaxListNeverLoosensARegisteredList: a registered list without a
// policy of its own is held to the site's, whatever lax list the message
// also goes to: for every limit, min_audience and the action, a message
// to such a list and any other lists is never looser than the site alone.
func TestLaxListNeverLoosensARegisteredList(t *testing.T) {
	const staff, lax = "all-staff@example.org", "announce@example.org"
	site := Defaults()
	lax0 := ListPolicy{MinAudience: Some(10_000_000), Action: ConfigMonitor, Limits: map[Rule]int64{}}
	for _, r := range LimitRules {
		lax0.Limits[r.Rule] = 0 // off: the loosest a list can be
	}
	laxBig := ListPolicy{Limits: map[Rule]int64{}}
	for _, r := range LimitRules {
		laxBig.Limits[r.Rule] = 3 * r.Limit(site.Limits)
	}
	for name, p := range map[string]ListPolicy{"every limit off, monitor": lax0, "three times the site's": laxBig} {
		s := &Site{Config: site, Lists: map[string]int{staff: 850000, lax: 900}}
		s.SetList(lax, p)
		for _, rcpts := range [][]string{{staff, lax}, {lax, staff}, {"<" + staff + ">", lax}} {
			c, _, _ := s.listPolicy(Envelope{Sender: "a@example.org", Rcpts: s.resolveAll(rcpts)}, nil, false)
			if c.MinAudience > site.MinAudience {
				t.Errorf("%s, to %v: min_audience %d, looser than the site's %d", name, rcpts, c.MinAudience, site.MinAudience)
			}
			for _, r := range LimitRules {
				if got, want := r.Limit(c.Limits), r.Limit(site.Limits); got == 0 || got > want {
					t.Errorf("%s, to %v: %s %d, looser than the site's %d", name, rcpts, r.Key, got, want)
				}
			}
			if actionRank[c.Action] < actionRank[site.Action] {
				t.Errorf("%s, to %v: action %s, looser than the site's %s", name, rcpts, c.Action, site.Action)
			}
		}
		// The lax list alone keeps its own policy.
		if c, _, _ := s.listPolicy(Envelope{Rcpts: []string{lax}}, nil, false); c.Action != p.Action && p.Action != "" {
			t.Errorf("%s alone: action %s, want the list's %s", name, c.Action, p.Action)
		}
	}
}
