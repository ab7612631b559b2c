package policy

// Per-list policy: a registered list may carry its own thresholds, storm
// action and posters; a message to lists gets the strictest of them
// (Effective). This file is the one home of those rules and of the forms
// operators write them in: a YAML mapping under list_policy in the config
// file, a JSON object in Redis (hash stormguard:listpolicy), and an older
// text form, "max_replies=3;posters=comms@example.org", still read.

// Opt is a setting a list may leave unset (the site's applies).
type Opt[T int | int64] struct {
	V   T
	Set bool
}

// Some is a set Opt.
func Some[T int | int64](v T) Opt[T] { return Opt[T]{V: v, Set: true} }

// ListPolicy is one list's own policy. A setting left unset is the site's.
type ListPolicy struct {
	MinAudience Opt[int] // policy.min_audience for a message to this list
	// Limits holds this list's value of the limit rules it sets, by
	// LimitRule.Rule; 0 turns the rule off for this list. A rule absent
	// is the site's.
	Limits map[Rule]int64
	Action ConfigAction
	// Posters, when not empty, gate the list: a message to it is
	// accepted only from one of them (senders, @domains or SASL logins,
	// lower case), a site poster (gate.posters, stormguard:posters) or an
	// exempt sender, whatever its audience. See ListGated.
	Posters []string
}

// IsZero reports whether p sets nothing: the list follows the site.
func (p ListPolicy) IsZero() bool {
	return !p.MinAudience.Set && len(p.Limits) == 0 && p.Action == "" && len(p.Posters) == 0
}

// Limit returns the list's value of rule r, and whether the list sets it.
func (p ListPolicy) Limit(r Rule) (int64, bool) {
	v, ok := p.Limits[r]
	return v, ok
}

// actionRank orders storm actions by how sure it is that a refused reply
// never reaches the list without an operator: reject (never), hold (only
// if an operator releases it), tempfail (the sender's MTA retries, and the
// reply goes through once the block ends), monitor (it goes through now).
var actionRank = map[ConfigAction]int{ConfigMonitor: 1, ConfigTempfail: 2, ConfigHold: 3, ConfigReject: 4}

// Effective is the policy for a message to lists (the registered lists it
// is sent to that have a policy of their own) under the site's: for each
// setting the strictest of the lists', a list that leaves it unset taking
// the site's. With no lists it is site.
//
//   - min_audience: the smallest (the most messages counted);
//   - max_replies and delivery_budget: the smallest that is on. A list's 0
//     (the rule off for it) applies only when every list has it off: it
//     says nothing about another list's replies, so it must not loosen
//     that list's limit;
//   - action: the strictest, reject > hold > tempfail > monitor
//     (actionRank);
//   - posters are not merged here: a sender must be allowed for every
//     gated list it posts to (ListGated), so that naming a list where it
//     may post does not open one where it may not.
//
// A list can loosen the site's policy only for messages that go to no
// stricter list. The site's window, block_for, gate and the rest stay.
func Effective(site Config, lists []ListPolicy) Config {
	if len(lists) == 0 {
		return site
	}
	c := site
	for i, p := range lists {
		own := site // the site's settings, with what this list sets
		if p.MinAudience.Set {
			own.MinAudience = p.MinAudience.V
		}
		for _, r := range LimitRules {
			if v, ok := p.Limits[r.Rule]; ok {
				own.Limits = r.With(own.Limits, v)
			}
		}
		if p.Action != "" {
			own.Action = p.Action
		}
		if i == 0 {
			c.MinAudience, c.Limits, c.Action = own.MinAudience, own.Limits, own.Action
			continue
		}
		c.MinAudience = min(c.MinAudience, own.MinAudience)
		for _, r := range LimitRules {
			c.Limits = r.With(c.Limits, stricter(r.Limit(c.Limits), r.Limit(own.Limits)))
		}
		if actionRank[own.Action] > actionRank[c.Action] {
			c.Action = own.Action
		}
	}
	return c
}

// stricter is the stricter of two limits where 0 means off.
func stricter(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// ListGated reports whether the gate of a list with posters stops a
// sender: the list names posters, and allowed (whether the sender is one
// of them, a site poster or exempt) says no. A message to several gated
// lists passes only if every one allows it.
func ListGated(p ListPolicy, allowed bool) bool { return len(p.Posters) > 0 && !allowed }
