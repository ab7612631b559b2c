package policy

import (
	"strings"
	"testing"
)

// TestGate: with gate.min_audience set, a message to at least that many
// mailboxes from anyone but an allowed poster gets gate.action at once,
// original or reply, before the store is asked (and so counts toward
// nothing); allowed posters (Facts.Poster: by sender, @domain or SASL
// login, worked out by Site.Plan) and exempt senders go on to the other
// rules; mode monitor tags, mode off skips it.
func TestGate(t *testing.T) {
	gate := func(a ConfigAction) Config {
		c := Defaults()
		c.Gate = Gate{MinAudience: 5000, Action: a}
		return c
	}
	big := 850000
	counted := &Tally{Status: StatusCounted, Count: 1}
	noted := &Tally{Status: StatusNoted}
	tests := []struct {
		name   string
		c      Config
		f      Facts
		t      *Tally // given to Decide when NeedsStore
		want   Action
		rule   Rule
		stored bool // NeedsStore
	}{
		{"unlisted original refused at once", gate(ConfigReject), Facts{Audience: big}, nil, ActionReject, RuleGate, false},
		{"unlisted reply refused too", gate(ConfigReject), Facts{Audience: big, Reply: true}, nil, ActionReject, RuleGate, false},
		{"unlisted auto-reply refused too", gate(ConfigReject), Facts{Audience: big, AutoReply: true}, nil, ActionReject, RuleGate, false},
		{"at exactly min_audience", gate(ConfigReject), Facts{Audience: 5000}, nil, ActionReject, RuleGate, false},
		{"tempfail", gate(ConfigTempfail), Facts{Audience: big}, nil, ActionTempfail, RuleGate, false},
		{"hold", gate(ConfigHold), Facts{Audience: big}, nil, ActionHold, RuleGate, false},
		{"zero action rejects", gate(""), Facts{Audience: big}, nil, ActionReject, RuleGate, false},
		{"poster original goes on to the store", gate(ConfigReject), Facts{Audience: big, Poster: true}, noted, ActionAccept, RuleOriginal, true},
		{"poster reply is counted like any", gate(ConfigReject), Facts{Audience: big, Poster: true, Reply: true}, counted, ActionAccept, RuleCounted, true},
		{"poster reply still stopped by a storm", gate(ConfigReject), Facts{Audience: big, Poster: true, Reply: true},
			&Tally{Status: StatusCrossed, Crossed: RuleMaxReplies}, ActionReject, RuleMaxReplies, true},
		{"exempt bypasses the gate", gate(ConfigReject), Facts{Audience: big, Exempt: true}, nil, ActionAccept, RuleExempt, false},
		{"below min_audience", gate(ConfigReject), Facts{Audience: 4999}, noted, ActionAccept, RuleOriginal, true},
		{"below both", gate(ConfigReject), Facts{Audience: 10}, nil, ActionAccept, RuleSmallAudience, false},
		{"mode monitor tags", gate(ConfigHold), Facts{Audience: big, Mode: ModeMonitor}, nil, ActionTag, RuleGate, false},
		{"mode off skips it", gate(ConfigReject), Facts{Audience: big, Mode: ModeOff}, nil, ActionAccept, RuleModeOff, false},
		{"off by default", Defaults(), Facts{Audience: big}, noted, ActionAccept, RuleOriginal, true},
		{"policy.action monitor does not soften the gate", func() Config { c := gate(ConfigReject); c.Action = ConfigMonitor; return c }(),
			Facts{Audience: big}, nil, ActionReject, RuleGate, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsStore(tt.c, tt.f); got != tt.stored {
				t.Errorf("NeedsStore = %v, want %v", got, tt.stored)
			}
			var tally *Tally
			if tt.stored {
				tally = tt.t
			}
			v := Decide(tt.c, tt.f, answer(tally))
			if v.Action != tt.want || v.Rule != tt.rule {
				t.Errorf("Decide = %s/%s, want %s/%s", v.Action, v.Rule, tt.want, tt.rule)
			}
		})
	}
}

func TestGateValidate(t *testing.T) {
	for _, tt := range []struct {
		g    Gate
		want string
	}{
		{Gate{MinAudience: 5000, Action: ConfigReject}, ""},
		{Gate{MinAudience: 5000, Action: ConfigTempfail}, ""},
		{Gate{MinAudience: 5000, Action: ConfigHold}, ""},
		{Gate{MinAudience: 0, Action: ConfigReject}, ""},
		{Gate{MinAudience: -1, Action: ConfigReject}, "gate.min_audience: must not be negative"},
		{Gate{MinAudience: 5000, Action: ConfigMonitor}, "gate.action: must be reject, tempfail or hold"},
		{Gate{MinAudience: 5000, Action: ""}, ""}, // the zero value: reject
		{Gate{MinAudience: 5000, Action: "bounce"}, "gate.action:"},
	} {
		c := Defaults()
		c.Gate = tt.g
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", tt.g, err, tt.want)
		}
	}
	// policy.action takes hold too (the storm's own hold), but gate.action
	// does not take monitor (above): the gate has no monitor of its own.
	c := Defaults()
	c.Action = ConfigHold
	if err := c.Validate(); err != nil {
		t.Errorf("policy.action hold: Validate() = %v, want nil", err)
	}
}
