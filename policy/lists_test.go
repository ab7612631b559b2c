package policy

import (
	"strings"
	"testing"
)

func TestEffective(t *testing.T) {
	site := Defaults() // min_audience 2500, max_replies 10, budget 1e6, reject
	site.Action = ConfigTempfail
	lp := func(s string) ListPolicy {
		t.Helper()
		p, err := ParseListPolicy(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	type want struct {
		minAud int
		max    int
		budget int64
		action ConfigAction
	}
	for _, tc := range []struct {
		name  string
		lists []string
		want  want
	}{
		{"no lists: the site's", nil, want{2500, 10, 1000000, ConfigTempfail}},
		{"a list without a policy of its own", []string{""}, want{2500, 10, 1000000, ConfigTempfail}},
		{"one list tightens", []string{"max_replies=3"}, want{2500, 3, 1000000, ConfigTempfail}},
		{"one list loosens, alone", []string{"max_replies=50;min_audience=9000"}, want{9000, 50, 1000000, ConfigTempfail}},
		{"a looser list does not loosen the site's for a message also to an unset list", []string{"max_replies=50;min_audience=9000", ""}, want{2500, 10, 1000000, ConfigTempfail}},
		{"strictest of two", []string{"max_replies=3", "max_replies=5;delivery_budget=100"}, want{2500, 3, 100, ConfigTempfail}},
		{"order does not matter", []string{"max_replies=5;delivery_budget=100", "max_replies=3"}, want{2500, 3, 100, ConfigTempfail}},
		{"a list's 0 turns the rule off when alone", []string{"max_replies=0;delivery_budget=0"}, want{2500, 0, 0, ConfigTempfail}},
		{"a list's 0 does not loosen another's limit", []string{"max_replies=0", "max_replies=3"}, want{2500, 3, 1000000, ConfigTempfail}},
		{"a list's 0 does not loosen the site's for an unset list", []string{"", "max_replies=0;delivery_budget=0"}, want{2500, 10, 1000000, ConfigTempfail}},
		{"0 everywhere is off", []string{"max_replies=0", "max_replies=0"}, want{2500, 0, 1000000, ConfigTempfail}},
		{"min_audience 0 counts every message", []string{"min_audience=0", "min_audience=100"}, want{0, 10, 1000000, ConfigTempfail}},
		{"action: reject beats hold", []string{"action=hold", "action=reject"}, want{2500, 10, 1000000, ConfigReject}},
		{"action: hold beats tempfail (the site's)", []string{"action=hold", ""}, want{2500, 10, 1000000, ConfigHold}},
		{"action: the site's tempfail beats monitor", []string{"action=monitor", ""}, want{2500, 10, 1000000, ConfigTempfail}},
		{"action: monitor alone", []string{"action=monitor"}, want{2500, 10, 1000000, ConfigMonitor}},
		{"posters do not change thresholds", []string{"posters=comms@example.org"}, want{2500, 10, 1000000, ConfigTempfail}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lists []ListPolicy
			for _, s := range tc.lists {
				lists = append(lists, lp(s))
			}
			c := Effective(site, lists)
			got := want{c.MinAudience, c.Limits.MaxReplies, c.Limits.DeliveryBudget, c.Action}
			if got != tc.want {
				t.Errorf("Effective(%q) = %+v, want %+v", tc.lists, got, tc.want)
			}
			if c.Limits.Window != site.Limits.Window || c.Limits.BlockFor != site.Limits.BlockFor || c.Gate != site.Gate {
				t.Errorf("Effective changed a site-only setting: %+v", c)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Effective gave an invalid config: %v", err)
			}
		})
	}
}

// Strictness is monotone: adding a list to a message never loosens any
// setting, and the result is the same in any order (exhaustive over a
// small value set).
func TestEffectiveNeverLoosens(t *testing.T) {
	site := Defaults()
	var all []ListPolicy
	unset := int64(-1)
	for _, mr := range []int64{unset, 0, 3, 20} {
		for _, b := range []int64{unset, 0, 500} {
			for _, a := range []ConfigAction{"", ConfigMonitor, ConfigTempfail, ConfigHold, ConfigReject} {
				for _, ma := range []Opt[int]{{}, Some(10), Some(9000)} {
					p := ListPolicy{MinAudience: ma, Action: a, Limits: map[Rule]int64{}}
					if mr != unset {
						p.Limits[RuleMaxReplies] = mr
					}
					if b != unset {
						p.Limits[RuleDeliveryBudget] = b
					}
					all = append(all, p)
				}
			}
		}
	}
	looser := func(a, b int64) bool { return a == 0 && b != 0 || b != 0 && a > b } // a looser than b (0: off)
	for _, p := range all {
		one := Effective(site, []ListPolicy{p})
		for _, q := range all {
			two := Effective(site, []ListPolicy{p, q})
			if rev := Effective(site, []ListPolicy{q, p}); rev != two {
				t.Fatalf("order matters: %v,%v = %+v; %v,%v = %+v", p, q, two, q, p, rev)
			}
			if two.MinAudience > one.MinAudience ||
				looser(int64(two.Limits.MaxReplies), int64(one.Limits.MaxReplies)) ||
				looser(two.Limits.DeliveryBudget, one.Limits.DeliveryBudget) ||
				actionRank[two.Action] < actionRank[one.Action] {
				t.Fatalf("adding %q to %q loosened: %+v then %+v", q, p, one, two)
			}
		}
	}
}

func TestListGated(t *testing.T) {
	gated := ListPolicy{Posters: []string{"comms@example.org"}}
	site := Defaults() // site gate off
	for _, tc := range []struct {
		name string
		f    Facts
		want bool
	}{
		{"list poster", Facts{Audience: 10, ListGated: ListGated(gated, true)}, false},
		{"not a list poster, any audience", Facts{Audience: 3, ListGated: ListGated(gated, false)}, true},
		{"list without posters gates nobody", Facts{Audience: 3, ListGated: ListGated(ListPolicy{}, false)}, false},
		{"exempt passes", Facts{Exempt: true, ListGated: true}, false},
		{"mode off passes", Facts{Mode: ModeOff, ListGated: true}, false},
	} {
		if got := Gated(site, tc.f); got != tc.want {
			t.Errorf("%s: Gated = %v, want %v", tc.name, got, tc.want)
		}
	}
	if v := Decide(site, Facts{Audience: 3, ListGated: true}, Answer{}); v.Rule != RuleGate || v.Action != ActionReject {
		t.Errorf("Decide on a list-gated message = %+v, want gate reject", v)
	}
	if NeedsStore(site, Facts{Audience: 5000, ListGated: true}) {
		t.Error("a gated message went to the store")
	}
}

func TestParseListPolicy(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: String() of the result, or the error's text
		bad      bool
	}{
		{in: "", want: "{}"},
		{in: " ; ", want: "{}"},
		{in: "{}", want: "{}"},
		{in: "max_replies=3;posters=comms@example.org", want: `{"max_replies":3,"posters":["comms@example.org"]}`},
		{in: " Posters = Comms@Example.org , @HR.example.org ; MAX_REPLIES = 3 ", want: `{"max_replies":3,"posters":["comms@example.org","@hr.example.org"]}`},
		{in: "action=hold;delivery_budget=0;min_audience=100", want: `{"min_audience":100,"delivery_budget":0,"action":"hold"}`},
		{in: "max_replies=9007199254740992", want: `{"max_replies":9007199254740992}`},
		{in: `{"action":"hold","delivery_budget":0,"min_audience":100}`, want: `{"min_audience":100,"delivery_budget":0,"action":"hold"}`},
		{in: ` {"Max_Replies": 3, "posters": ["Comms@Example.org", "@hr.example.org"]} `, want: `{"max_replies":3,"posters":["comms@example.org","@hr.example.org"]}`},
		{in: `{"posters":"a@example.org, b@example.org"}`, want: `{"posters":["a@example.org","b@example.org"]}`},
		{in: `{"max_replies":3.0}`, bad: true, want: "max_replies"},
		{in: "max_replies=9007199254740993", bad: true, want: "max_replies"},
		{in: `{"max_replies":9007199254740993}`, bad: true, want: "max_replies"},
		{in: "max_replies=-1", bad: true, want: "max_replies"},
		{in: `{"max_replies":-1}`, bad: true, want: "max_replies"},
		{in: `{"max_replies":2.5}`, bad: true, want: "max_replies"},
		{in: `{"max_replies":"3"}`, want: `{"max_replies":3}`},
		{in: `{"max_replies":true}`, bad: true, want: "max_replies"},
		{in: "max_replies=three", bad: true, want: "max_replies"},
		{in: "max_replies", bad: true, want: "key=value"},
		{in: "max_replies=3;max_replies=4", bad: true, want: "given twice"},
		{in: "action=drop", bad: true, want: "action"},
		{in: `{"action":3}`, bad: true, want: "action"},
		{in: "window=5m", bad: true, want: "window"},
		{in: `{"window":"5m"}`, bad: true, want: "window"},
		{in: `{"max_replies":3} {"max_replies":4}`, bad: true, want: "one JSON object"},
		{in: `{"max_replies":3`, bad: true, want: "JSON"},
		{in: `{"posters":[3]}`, bad: true, want: "posters"},
		{in: "posters=a b@example.org", bad: true, want: "posters"},
		{in: "posters=a@example.org,,b@example.org", bad: true, want: "posters"},
		{in: "posters=<script>\r\n@x", bad: true, want: "posters"},
		{in: "action=drop;max_replies=x", bad: true, want: "max_replies"}, // every mistake
		{in: `{"action":"drop","max_replies":"x"}`, bad: true, want: "max_replies"},
		{in: "min_audience=4294967296", bad: true, want: "min_audience"},
	} {
		p, err := ParseListPolicy(tc.in)
		switch {
		case tc.bad && err == nil:
			t.Errorf("ParseListPolicy(%q) = %v, want an error", tc.in, p)
		case tc.bad && !strings.Contains(err.Error(), tc.want):
			t.Errorf("ParseListPolicy(%q) error %q does not name %q", tc.in, err, tc.want)
		case !tc.bad && err != nil:
			t.Errorf("ParseListPolicy(%q): %v", tc.in, err)
		case !tc.bad && p.String() != tc.want:
			t.Errorf("ParseListPolicy(%q).String() = %q, want %q", tc.in, p.String(), tc.want)
		case !tc.bad:
			if q, err := ParseListPolicy(p.String()); err != nil || q.String() != p.String() {
				t.Errorf("round trip of %q: %q, %v", p.String(), q.String(), err)
			}
			if p.IsZero() != (tc.want == "{}") {
				t.Errorf("ParseListPolicy(%q).IsZero() = %v", tc.in, p.IsZero())
			}
		}
	}
}

func FuzzParseListPolicy(f *testing.F) {
	f.Add("max_replies=3;posters=comms@example.org")
	f.Add("action=hold;delivery_budget=0")
	f.Add(`{"max_replies":3,"action":"hold","posters":["a@example.org"]}`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseListPolicy(s)
		if err != nil {
			return
		}
		q, err := ParseListPolicy(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("%q: round trip %q -> %q, %v", s, p.String(), q.String(), err)
		}
		if strings.ContainsAny(p.String(), "\r\n") {
			t.Fatalf("%q: String has a line break", s)
		}
	})
}
