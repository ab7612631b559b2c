package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the error; none: valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"zero thresholds allowed", func(c *Config) {
			c.MinAudience, c.AutoReplyMaxAudience, c.Limits.MaxReplies, c.Limits.DeliveryBudget = 0, 0, 0, 0
		}, nil},
		{"tempfail", func(c *Config) { c.Action = ConfigTempfail }, nil},
		{"monitor", func(c *Config) { c.Action = ConfigMonitor }, nil},
		{"hold", func(c *Config) { c.Action = ConfigHold }, nil},
		{"bad action", func(c *Config) { c.Action = "bounce" }, []string{"policy.action: must be reject, tempfail, hold or monitor"}},
		{"empty action", func(c *Config) { c.Action = "" }, []string{"policy.action:"}},
		{"negative min_audience", func(c *Config) { c.MinAudience = -1 }, []string{"policy.min_audience: must not be negative"}},
		{"negative auto_reply_max_audience", func(c *Config) { c.AutoReplyMaxAudience = -1 }, []string{"policy.auto_reply_max_audience:"}},
		{"negative max_replies", func(c *Config) { c.Limits.MaxReplies = -1 }, []string{"policy.max_replies:"}},
		{"negative delivery_budget", func(c *Config) { c.Limits.DeliveryBudget = -1 }, []string{"policy.delivery_budget:"}},
		{"delivery_budget at 2^53", func(c *Config) { c.Limits.DeliveryBudget = MaxLimit }, nil},
		{"delivery_budget over 2^53", func(c *Config) { c.Limits.DeliveryBudget = MaxLimit + 1 }, []string{"policy.delivery_budget: must be at most 2^53"}},
		{"zero window", func(c *Config) { c.Limits.Window = 0 }, []string{"policy.window: must be longer than 0"}},
		{"negative block_for", func(c *Config) { c.Limits.BlockFor = -time.Second }, []string{"policy.block_for:"}},
		{"all at once", func(c *Config) {
			c.MinAudience, c.Action, c.Limits.Window = -5, "x", 0
		}, []string{"policy.min_audience:", "policy.action:", "policy.window:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.change(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNeedsStoreAndKindOf(t *testing.T) {
	c := Defaults() // min 2500, auto-reply max 100
	tests := []struct {
		name  string
		f     Facts
		store bool
		kind  Kind
	}{
		{"most mail: small original", Facts{Audience: 3}, false, KindOriginal},
		{"reply to the sender only", Facts{Reply: true, Audience: 1}, false, KindReply},
		{"reply at min-1", Facts{Reply: true, Audience: 2499}, false, KindReply},
		{"reply at exactly min", Facts{Reply: true, Audience: 2500}, true, KindReply},
		{"large original", Facts{Audience: 850000}, true, KindOriginal},
		{"mode off", Facts{Mode: ModeOff, Reply: true, Audience: 850000}, false, KindReply},
		{"mode monitor still counts", Facts{Mode: ModeMonitor, Reply: true, Audience: 2500}, true, KindReply},
		{"mode enforce", Facts{Mode: ModeEnforce, Reply: true, Audience: 2500}, true, KindReply},
		{"exempt", Facts{Exempt: true, Reply: true, Audience: 850000}, false, KindReply},
		{"auto-reply at its limit", Facts{AutoReply: true, Audience: 100}, false, KindAutoReply},
		{"auto-reply over its limit", Facts{AutoReply: true, Audience: 101}, true, KindAutoReply},
		{"auto-reply that is a reply", Facts{AutoReply: true, Reply: true, Audience: 5000}, true, KindAutoReply},
		{"zero audience", Facts{}, false, KindOriginal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsStore(c, tt.f); got != tt.store {
				t.Errorf("NeedsStore = %v, want %v", got, tt.store)
			}
			if got := KindOf(c, tt.f); got != tt.kind {
				t.Errorf("KindOf = %v, want %v", got, tt.kind)
			}
		})
	}
	t.Run("auto-reply limit above min audience", func(t *testing.T) {
		c := Defaults()
		c.AutoReplyMaxAudience = 5000
		if !NeedsStore(c, Facts{AutoReply: true, Audience: 2500}) {
			t.Error("an auto-reply at min_audience must reach the store")
		}
	})
	t.Run("min audience 0 sends everything", func(t *testing.T) {
		c := Defaults()
		c.MinAudience = 0
		if !NeedsStore(c, Facts{Audience: 0}) {
			t.Error("NeedsStore = false with min_audience 0")
		}
	})
}

func TestDecide(t *testing.T) {
	base := Defaults()
	withAction := func(a ConfigAction) Config { c := base; c.Action = a; return c }
	reply := Facts{Reply: true, Audience: 5000}
	auto := func(n int) Facts { return Facts{AutoReply: true, Audience: n} }
	tally := func(s Status) *Tally { return &Tally{Status: s} }
	blocked := &Tally{Status: StatusBlocked, BlockTTL: time.Hour}
	tests := []struct {
		name string
		c    Config
		f    Facts
		t    *Tally
		want Verdict
	}{
		{"mode off beats everything", base, Facts{Mode: ModeOff, Reply: true, Audience: 1e6}, &Tally{Override: OverrideBlock}, Verdict{Action: ActionAccept, Rule: RuleModeOff}},
		{"exempt sender", base, Facts{Exempt: true, Reply: true, Audience: 1e6}, nil, Verdict{Action: ActionAccept, Rule: RuleExempt}},
		{"exempt on a blocked thread", base, Facts{Exempt: true, Reply: true, Audience: 1e6}, blocked, Verdict{Action: ActionAccept, Rule: RuleExempt}},
		{"small audience without tally", base, Facts{Reply: true, Audience: 2499}, nil, Verdict{Action: ActionAccept, Rule: RuleSmallAudience}},
		{"small audience to a blocked thread", base, Facts{Reply: true, Audience: 1}, blocked, Verdict{Action: ActionAccept, Rule: RuleSmallAudience}},
		{"small auto-reply", base, auto(100), nil, Verdict{Action: ActionAccept, Rule: RuleSmallAudience}},
		{"store failed when it was needed", base, reply, nil, Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"unknown status", base, reply, tally("weird"), Verdict{Action: ActionAccept, Rule: RuleStoreError}},
		{"override allow", base, reply, &Tally{Override: OverrideAllow, Status: StatusNoted}, Verdict{Action: ActionAccept, Rule: RuleOverrideAllow}},
		{"override allow on a blocked thread", base, reply, &Tally{Override: OverrideAllow, Status: StatusBlocked}, Verdict{Action: ActionAccept, Rule: RuleOverrideAllow}},
		{"override allow lets a big auto-reply through", base, auto(5000), &Tally{Override: OverrideAllow, Status: StatusNoted}, Verdict{Action: ActionAccept, Rule: RuleOverrideAllow}},
		{"override block", base, reply, &Tally{Override: OverrideBlock, Status: StatusNoted}, Verdict{Action: ActionReject, Rule: RuleOverrideBlock}},
		{"override block on a blocked thread", base, reply, &Tally{Override: OverrideBlock, Status: StatusBlocked}, Verdict{Action: ActionReject, Rule: RuleOverrideBlock}},
		{"override block on an original", base, Facts{Audience: 5000}, &Tally{Override: OverrideBlock, Status: StatusNoted}, Verdict{Action: ActionReject, Rule: RuleOverrideBlock}},
		{"auto-reply just over its limit", base, auto(101), tally(StatusNoted), Verdict{Action: ActionReject, Rule: RuleAutoReply}},
		{"auto-reply under its limit but at min audience", withLimits(base, 2500, 5000), auto(2500), tally(StatusNoted), Verdict{Action: ActionAccept, Rule: RuleAutoReply}},
		{"auto-reply over its limit, tempfail", withAction(ConfigTempfail), auto(850000), tally(StatusNoted), Verdict{Action: ActionTempfail, Rule: RuleAutoReply}},
		{"original noted", base, Facts{Audience: 850000}, tally(StatusNoted), Verdict{Action: ActionAccept, Rule: RuleOriginal}},
		{"counted", base, reply, &Tally{Status: StatusCounted, Count: 3, Delivered: 15000}, Verdict{Action: ActionAccept, Rule: RuleCounted}},
		{"duplicate", base, reply, tally(StatusDuplicate), Verdict{Action: ActionAccept, Rule: RuleDuplicate}},
		{"blocked", base, reply, blocked, Verdict{Action: ActionReject, Rule: RuleBlocked}},
		{"crossed max_replies", base, reply, &Tally{Status: StatusCrossed, Crossed: RuleMaxReplies}, Verdict{Action: ActionReject, Rule: RuleMaxReplies}},
		{"crossed delivery_budget", base, reply, &Tally{Status: StatusCrossed, Crossed: RuleDeliveryBudget}, Verdict{Action: ActionReject, Rule: RuleDeliveryBudget}},
		{"crossed without a rule", base, reply, tally(StatusCrossed), Verdict{Action: ActionReject, Rule: RuleBlocked}},
		{"crossed an unknown rule", base, reply, &Tally{Status: StatusCrossed, Crossed: "max_bananas"}, Verdict{Action: ActionReject, Rule: RuleBlocked}},
		{"action tempfail", withAction(ConfigTempfail), reply, blocked, Verdict{Action: ActionTempfail, Rule: RuleBlocked}},
		{"action monitor", withAction(ConfigMonitor), reply, blocked, Verdict{Action: ActionTag, Rule: RuleBlocked}},
		{"mode monitor tags whatever the action", withAction(ConfigTempfail), Facts{Mode: ModeMonitor, Reply: true, Audience: 5000}, &Tally{Status: StatusCrossed, Crossed: RuleMaxReplies}, Verdict{Action: ActionTag, Rule: RuleMaxReplies}},
		{"mode monitor, override block", base, Facts{Mode: ModeMonitor, Reply: true, Audience: 5000}, &Tally{Override: OverrideBlock}, Verdict{Action: ActionTag, Rule: RuleOverrideBlock}},
		{"mode monitor, counted", base, Facts{Mode: ModeMonitor, Reply: true, Audience: 5000}, tally(StatusCounted), Verdict{Action: ActionAccept, Rule: RuleCounted}},
		{"mode enforce spelled out", base, Facts{Mode: ModeEnforce, Reply: true, Audience: 5000}, blocked, Verdict{Action: ActionReject, Rule: RuleBlocked}},
		// policy.action hold: every thread rule holds; an auto-reply
		// over its audience is rejected; what is accepted stays accepted.
		{"hold: blocked", withAction(ConfigHold), reply, blocked, Verdict{Action: ActionHold, Rule: RuleBlocked}},
		{"hold: crossed max_replies", withAction(ConfigHold), reply, &Tally{Status: StatusCrossed, Crossed: RuleMaxReplies}, Verdict{Action: ActionHold, Rule: RuleMaxReplies}},
		{"hold: crossed delivery_budget", withAction(ConfigHold), reply, &Tally{Status: StatusCrossed, Crossed: RuleDeliveryBudget}, Verdict{Action: ActionHold, Rule: RuleDeliveryBudget}},
		{"hold: crossed without a rule", withAction(ConfigHold), reply, tally(StatusCrossed), Verdict{Action: ActionHold, Rule: RuleBlocked}},
		{"hold: override block", withAction(ConfigHold), reply, &Tally{Override: OverrideBlock, Status: StatusNoted}, Verdict{Action: ActionHold, Rule: RuleOverrideBlock}},
		{"hold: override block on an original", withAction(ConfigHold), Facts{Audience: 5000}, &Tally{Override: OverrideBlock, Status: StatusNoted}, Verdict{Action: ActionHold, Rule: RuleOverrideBlock}},
		{"hold: auto-reply over its limit is rejected", withAction(ConfigHold), auto(850000), tally(StatusNoted), Verdict{Action: ActionReject, Rule: RuleAutoReply}},
		{"hold: auto-reply under its limit", withLimits(withAction(ConfigHold), 2500, 5000), auto(2500), tally(StatusNoted), Verdict{Action: ActionAccept, Rule: RuleAutoReply}},
		{"hold: counted", withAction(ConfigHold), reply, &Tally{Status: StatusCounted, Count: 3}, Verdict{Action: ActionAccept, Rule: RuleCounted}},
		{"hold: duplicate on a blocked thread", withAction(ConfigHold), reply, tally(StatusDuplicate), Verdict{Action: ActionAccept, Rule: RuleDuplicate}},
		{"hold: original", withAction(ConfigHold), Facts{Audience: 850000}, tally(StatusNoted), Verdict{Action: ActionAccept, Rule: RuleOriginal}},
		{"hold: override allow", withAction(ConfigHold), reply, &Tally{Override: OverrideAllow, Status: StatusBlocked}, Verdict{Action: ActionAccept, Rule: RuleOverrideAllow}},
		{"hold: small audience", withAction(ConfigHold), Facts{Reply: true, Audience: 1}, nil, Verdict{Action: ActionAccept, Rule: RuleSmallAudience}},
		{"hold: exempt", withAction(ConfigHold), Facts{Exempt: true, Reply: true, Audience: 1e6}, blocked, Verdict{Action: ActionAccept, Rule: RuleExempt}},
		{"hold: mode monitor tags", withAction(ConfigHold), Facts{Mode: ModeMonitor, Reply: true, Audience: 5000}, blocked, Verdict{Action: ActionTag, Rule: RuleBlocked}},
		{"hold: mode off", withAction(ConfigHold), Facts{Mode: ModeOff, Reply: true, Audience: 5000}, blocked, Verdict{Action: ActionAccept, Rule: RuleModeOff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.c, tt.f, answer(tt.t)); got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func withLimits(c Config, minAudience, autoMax int) Config {
	c.MinAudience, c.AutoReplyMaxAudience = minAudience, autoMax
	return c
}

func TestOnStoreError(t *testing.T) {
	tests := []struct {
		name   string
		action ConfigAction
		mode   Mode
		want   Action
	}{
		{"reject", ConfigReject, "", ActionTempfail},
		{"tempfail", ConfigTempfail, ModeEnforce, ActionTempfail},
		{"monitor action", ConfigMonitor, "", ActionAccept},
		{"monitor mode", ConfigReject, ModeMonitor, ActionAccept},
		{"hold tempfails: no store, no storm known", ConfigHold, "", ActionTempfail},
		{"hold in monitor mode", ConfigHold, ModeMonitor, ActionAccept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			c.Action = tt.action
			v := OnStoreError(c, Facts{Mode: tt.mode, Reply: true, Audience: 5000})
			if v.Action != tt.want || v.Rule != RuleStoreError {
				t.Errorf("OnStoreError = %+v, want %s/%s", v, tt.want, RuleStoreError)
			}
		})
	}
}

// answer is the store's answer a test's tally stands for: nil, that the
// store failed and nothing counted the message.
func answer(t *Tally) Answer {
	if t == nil {
		return Answer{Failed: FailOpen}
	}
	return Answer{Tally: *t}
}

func ExampleDecide() {
	c := Defaults() // min_audience 2500, max_replies 10, delivery_budget 1,000,000
	f := Facts{Reply: true, Audience: 850001}
	fmt.Println(NeedsStore(c, f), KindOf(c, f))

	// The store counted the first reply-all to an NHS-sized list ...
	fmt.Println(Decide(c, f, Answer{Tally: Tally{Status: StatusCounted, Count: 1, Delivered: 850001}}))
	// ... and refuses the second: it would pass the delivery budget.
	fmt.Println(Decide(c, f, Answer{Tally: Tally{Status: StatusCrossed, Crossed: RuleDeliveryBudget, BlockTTL: 6 * time.Hour}}))
	// A reply to the sender only never reaches the store.
	fmt.Println(Decide(c, Facts{Reply: true, Audience: 1}, Answer{}))
	// Output:
	// true reply
	// {accept counted }
	// {reject delivery_budget }
	// {accept small_audience }
}
