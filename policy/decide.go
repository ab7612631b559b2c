package policy

import (
	"errors"
	"time"
)

// Config is the policy part of stormguard's configuration (the policy.*
// keys).
type Config struct {
	MinAudience          int // policy.min_audience
	AutoReplyMaxAudience int // policy.auto_reply_max_audience
	Action               ConfigAction
	Limits               Limits // policy.window, block_for and the LimitRules keys
	// SplitEnvelopes says the node sees a message to a list as several
	// transactions of a few recipients each (policy.split_envelopes), so
	// that the header's audience counts too (AudienceOf).
	SplitEnvelopes bool
	// Gate is the sender gate (the gate.* keys).
	Gate Gate
}

// Gate is the sender gate: a message to at least MinAudience mailboxes is
// accepted only from an allowed poster (Facts.Poster); others get Action.
type Gate struct {
	MinAudience int          // gate.min_audience; 0: no gate
	Action      ConfigAction // gate.action: reject ("" too), tempfail or hold
}

// Defaults returns the documented defaults, those of Exchange Online's
// reply-all storm protection plus a delivery budget.
func Defaults() Config {
	return Config{
		MinAudience:          2500,
		AutoReplyMaxAudience: 100,
		Action:               ConfigReject,
		Gate:                 Gate{Action: ConfigReject},
		Limits: Limits{
			MaxReplies:     10,
			DeliveryBudget: 1000000,
			Window:         60 * time.Minute,
			BlockFor:       6 * time.Hour,
		},
	}
}

// Validate reports every invalid value, each naming its config key. There
// are no floors: any non-negative threshold is allowed, and a limit of 0
// disables its rule.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, errors.New("policy."+key+": "+msg)) }
	if c.MinAudience < 0 {
		bad("min_audience", "must not be negative")
	}
	if c.AutoReplyMaxAudience < 0 {
		bad("auto_reply_max_audience", "must not be negative")
	}
	switch c.Action {
	case ConfigReject, ConfigTempfail, ConfigHold, ConfigMonitor:
	default:
		bad("action", "must be reject, tempfail, hold or monitor")
	}
	for _, r := range LimitRules {
		switch v := r.Limit(c.Limits); {
		case v < 0:
			bad(r.Key, "must not be negative (0 disables the rule)")
		case v > MaxLimit:
			bad(r.Key, "must be at most 2^53 (9007199254740992)")
		}
	}
	if c.Gate.MinAudience < 0 {
		errs = append(errs, errors.New("gate.min_audience: must not be negative (0: no gate)"))
	}
	switch c.Gate.Action {
	case "", ConfigReject, ConfigTempfail, ConfigHold: // "": reject
	default:
		errs = append(errs, errors.New("gate.action: must be reject, tempfail or hold"))
	}
	if c.Limits.Window <= 0 {
		bad("window", "must be longer than 0")
	}
	if c.Limits.BlockFor <= 0 {
		bad("block_for", "must be longer than 0")
	}
	return errors.Join(errs...)
}

// Facts are what is known about a message before the store is asked
// (Site.Plan works them out).
type Facts struct {
	Mode   Mode // "" means enforce
	Exempt bool // the sender is exempt (policy.exempt_senders, stormguard:exempt)
	// Poster says the message may pass the sender gate: its envelope
	// sender, the sender's @domain or its SASL login ({auth_authen}) is
	// an allowed poster (gate.posters, stormguard:posters).
	Poster bool
	// ListGated says the message goes to a list with posters of its own
	// (ListPolicy.Posters) that does not allow its sender (ListGated):
	// the gate stops it whatever its audience.
	ListGated bool
	AutoReply bool // IsAutoReply
	Reply     bool // Identity.Reply
	Audience  int  // Audience
}

// Verdict is what happens to one message, and why.
type Verdict struct {
	Action Action
	Rule   Rule     // which rule decided; logged, never sent to the client
	Thread ThreadID // filled by the caller
}

// NeedsStore reports whether the message must go to the store. Most mail
// must not: with mode off, from an exempt sender, and every message that is
// not an auto-reply and reaches fewer than MinAudience mailboxes, the
// verdict is known without it. Auto-replies go to the store when they reach
// at least MinAudience or more than AutoReplyMaxAudience mailboxes (their
// thread's override may still allow them). A message the sender gate stops
// (Gated) does not go either: it is decided without the store, and, not
// being delivered, it counts toward no thread, so that refused posts cannot
// block a thread for everyone else.
func NeedsStore(c Config, f Facts) bool {
	if f.Mode == ModeOff || f.Exempt || Gated(c, f) {
		return false
	}
	if f.Audience >= c.MinAudience {
		return true
	}
	return f.AutoReply && f.Audience > c.AutoReplyMaxAudience
}

// KindOf tells the store how to record a message: an auto-reply is never
// counted, whatever else it is.
func KindOf(_ Config, f Facts) Kind {
	switch {
	case f.AutoReply:
		return KindAutoReply
	case f.Reply:
		return KindReply
	}
	return KindOriginal
}

// Decide gives the verdict on a message from its facts and, when
// NeedsStore, the store's answer (a is not read otherwise). The rules, in
// order:
//
//  1. mode off: accept (mode_off);
//  2. exempt sender: accept (exempt);
//  3. the sender gate (Gated: an audience of at least Gate.MinAudience,
//     and the sender is no allowed poster): Gate.Action (gate), or tag in
//     monitor mode. It comes before everything the store says, so that the
//     first message to a huge list is stopped, not only its replies, and no
//     override or count can let an unlisted sender through; only mode off
//     and exempt senders come first;
//  4. no store needed (small audience): accept (small_audience);
//  5. thread override allow: accept (override_allow), even if blocked;
//  6. thread override block: refuse (override_block);
//  7. auto-reply over AutoReplyMaxAudience: refuse (auto_reply), but
//     reject rather than hold;
//     other auto-replies: accept (auto_reply);
//  8. noted by the store (an original): accept (original);
//  9. the same message counted again (StatusDuplicate: its message-id
//     was counted in the window from the same envelope sender to the
//     same audience, and has passed again at most MaxDuplicates times):
//     accept (duplicate), even on a blocked thread, so that an MTA's
//     retry or the relay hop of an admitted reply never bounces. Any
//     other reuse of a counted message-id (another sender or audience, or
//     more passes) is a reply like any other: the rules below apply;
//  10. the thread is blocked: refuse (blocked);
//  11. this reply crossed a limit: refuse (its LimitRules rule:
//     max_replies or delivery_budget);
//  12. counted within the limits: accept (counted).
//
// To refuse is to reject, tempfail, hold or tag, as Config.Action says,
// and always to tag in monitor mode. Hold (the MTA's hold queue, for an
// operator to release or delete) applies to every thread rule: blocked,
// max_replies, delivery_budget and override_block (an operator's block is
// a storm they saw first: its replies wait with the storm's). It does not
// apply to auto_reply: an out-of-office notice to a whole list is no
// message anyone will release, and a held one would only fill the hold
// queue, so with action hold it is rejected.
//
// When the store failed (Answer.Failed), rules 5 to 12 give way to the
// failure's verdict: accept with rule store_error (FailOpen, as
// store.on_error=accept does once its memory store failed too) or
// OnStoreError's (FailTempfail). An unusable tally accepts with rule
// store_error too.
func Decide(c Config, f Facts, a Answer) Verdict {
	if v, ok := known(c, f); ok {
		return v
	}
	t := &a.Tally
	switch {
	case a.Failed == FailTempfail:
		return OnStoreError(c, f)
	case a.Failed != "":
		return accept(RuleStoreError)
	case t.Override == OverrideAllow:
		return accept(RuleOverrideAllow)
	case t.Override == OverrideBlock:
		return refuse(c, f, RuleOverrideBlock)
	case f.AutoReply && f.Audience > c.AutoReplyMaxAudience:
		return refuse(c, f, RuleAutoReply)
	case f.AutoReply:
		return accept(RuleAutoReply)
	}
	switch t.Status {
	case StatusNoted:
		return accept(RuleOriginal)
	case StatusDuplicate:
		return accept(RuleDuplicate)
	case StatusBlocked:
		return refuse(c, f, RuleBlocked)
	case StatusCrossed:
		if IsLimit(t.Crossed) {
			return refuse(c, f, t.Crossed)
		}
		return refuse(c, f, RuleBlocked)
	case StatusCounted:
		return accept(RuleCounted)
	}
	return accept(RuleStoreError)
}

// known is Decide's verdict when it is known without the store (rules 1
// to 4: !NeedsStore), and whether it is.
func known(c Config, f Facts) (Verdict, bool) {
	switch {
	case f.Mode == ModeOff:
		return accept(RuleModeOff), true
	case f.Exempt:
		return accept(RuleExempt), true
	case Gated(c, f):
		return gate(c, f), true
	case !NeedsStore(c, f):
		return accept(RuleSmallAudience), true
	}
	return Verdict{}, false
}

// MayLink reports whether a message of kind k that the store tallied as
// t may link its identities (Record.Links) to the thread it
// was recorded in: only when the store let it through (an override allow,
// or, without an override, noted, counted or a duplicate). A refused
// message, a storm's next reply or a forgery refused in a thread it made
// up, leaves no way into that thread for later messages. Auto-replies
// never link: they are not part of the conversation, and may be refused
// for their audience alone.
func MayLink(k Kind, t Tally) bool {
	if k == KindAutoReply {
		return false
	}
	switch t.Override {
	case OverrideAllow:
		return true
	case OverrideBlock:
		return false
	}
	switch t.Status {
	case StatusNoted, StatusCounted, StatusDuplicate:
		return true
	}
	return false
}

// Repeats reports whether a message counted before may pass again as
// itself (StatusDuplicate) on its passes-th repeat (1 for the first): at
// most MaxDuplicates times. The store checks that it is the same message
// (message-id, envelope sender's SenderPrint and audience); record.lua's
// "repeat" line is this rule's twin.
func Repeats(passes int) bool { return passes <= MaxDuplicates }

// OnStoreError is the verdict when the store failed and
// store.on_error=tempfail (Answer.Failed FailTempfail): tempfail (rule
// store_error), except in monitor (mode or action), which never refuses
// and accepts instead. Action hold tempfails too: without the store
// nothing says the thread storms, and holding every large-audience
// message of an outage would leave an operator to release each one, where
// a tempfail is retried by the sender's MTA on its own. With
// store.on_error=accept the caller counts in its memory store instead,
// and answers with that tally, or with FailOpen if that failed too.
func OnStoreError(c Config, f Facts) Verdict {
	if f.Mode == ModeMonitor || c.Action == ConfigMonitor {
		return accept(RuleStoreError)
	}
	return Verdict{Action: ActionTempfail, Rule: RuleStoreError}
}

// Gated reports whether the sender gate stops a message: its sender is
// not exempt, mode is not off, and either the site's gate is on
// (Gate.MinAudience > 0), the message reaches at least Gate.MinAudience
// mailboxes and its sender is no allowed poster, or it goes to a list
// whose own posters do not include its sender (Facts.ListGated).
func Gated(c Config, f Facts) bool {
	if f.Exempt || f.Mode == ModeOff {
		return false
	}
	return f.ListGated || c.Gate.MinAudience > 0 && f.Audience >= c.Gate.MinAudience && !f.Poster
}

// gate is the gate's verdict: Gate.Action, or tag in monitor mode.
// policy.action (the storm response) does not apply.
func gate(c Config, f Facts) Verdict {
	a := ActionReject
	switch {
	case f.Mode == ModeMonitor:
		a = ActionTag
	case c.Gate.Action == ConfigTempfail:
		a = ActionTempfail
	case c.Gate.Action == ConfigHold:
		a = ActionHold
	}
	return Verdict{Action: a, Rule: RuleGate}
}

func accept(r Rule) Verdict { return Verdict{Action: ActionAccept, Rule: r} }

func refuse(c Config, f Facts, r Rule) Verdict {
	a := ActionReject
	switch {
	case f.Mode == ModeMonitor || c.Action == ConfigMonitor:
		a = ActionTag
	case c.Action == ConfigTempfail:
		a = ActionTempfail
	case c.Action == ConfigHold && r != RuleAutoReply: // see Decide
		a = ActionHold
	}
	return Verdict{Action: a, Rule: r}
}
