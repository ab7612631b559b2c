package config

import (
	"strings"
	"testing"
)

// TestListPolicy: list_policy is read from YAML with dotted addresses, and
// from the environment; the filter and the admin work get it parsed; a
// mistake names list_policy, the list and the setting.
func TestListPolicy(t *testing.T) {
	path := writeConfig(t, `
lists:
  all-staff@example.org: 850000
list_policy:
  All-Staff@Example.org:
    max_replies: 3
    posters: [comms@example.org, "@hr.example.org"]
  big.list@example.ac.uk: {action: hold, delivery_budget: 0}
  old.form@example.org: "max_replies=2;action=tempfail"
`)
	cfg, _, err := loadConfig(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	fc := cfg.FilterConfig()
	got := map[string]string{}
	for a, p := range fc.ListPolicies {
		got[a] = p.String()
	}
	if got["all-staff@example.org"] != `{"max_replies":3,"posters":["comms@example.org","@hr.example.org"]}` ||
		got["big.list@example.ac.uk"] != `{"delivery_budget":0,"action":"hold"}` ||
		got["old.form@example.org"] != `{"max_replies":2,"action":"tempfail"}` || len(got) != 3 {
		t.Errorf("list policies = %q", got)
	}
	if ac := cfg.AdminConfig(); len(ac.ListPolicies) != 3 || ac.Policy.Limits.MaxReplies != 10 {
		t.Errorf("admin config: %+v", ac)
	}

	t.Setenv("STORMGUARD_LIST_POLICY", `a@example.org=max_replies=2;action=tempfail  b@example.org={"min_audience":10}`)
	cfg, _, err = loadConfig(writeConfig(t, "{}\n"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.FilterConfig().ListPolicies; p["a@example.org"].String() != `{"max_replies":2,"action":"tempfail"}` || p["b@example.org"].String() != `{"min_audience":10}` {
		t.Errorf("from the environment: %v", p)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"list_policy:\n  a@example.org: \"max_replies=-1\"\n", "list_policy (line 2): a@example.org: max_replies"},
		{"list_policy:\n  a@example.org: \"action=drop\"\n", "list_policy (line 2): a@example.org: action"},
		{"list_policy:\n  a@example.org:\n    max_replys: 3\n", `a@example.org: "max_replys" is not min_audience`},
		{"list_policy:\n  a@example.org:\n    max_replies: [3]\n", "a@example.org: max_replies"},
		{"list_policy:\n  a@example.org: {max_replies: 3}\n  A@example.org: {max_replies: 4}\n", "a@example.org: given twice"},
		{"list_policy:\n  nolist: \"max_replies=3\"\n", "list_policy: \"nolist\" is not a list address"},
	} {
		t.Setenv("STORMGUARD_LIST_POLICY", "")
		_, _, err := loadConfig(writeConfig(t, tc.yaml), true, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestListPolicyIsLive: a list_policy changed in the file takes effect
// on SIGHUP, like lists: the filter reads it from its swapped config.
func TestListPolicyIsLive(t *testing.T) {
	running, _, err := loadConfig(writeConfig(t, "list_policy:\n  a@example.org: \"max_replies=3\"\n"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	next, _, err := loadConfig(writeConfig(t, "list_policy:\n  a@example.org: \"max_replies=2\"\n"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	applied, changed, restart := Reload(running, next)
	if len(changed) != 1 || changed[0] != "list_policy" || len(restart) != 0 ||
		applied.FilterConfig().ListPolicies["a@example.org"].String() != `{"max_replies":2}` {
		t.Errorf("Reload: changed %v, restart %v, applied %v", changed, restart, applied.ListPolicy)
	}
}
