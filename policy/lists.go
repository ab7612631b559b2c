package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Per-list policy: a registered list may carry its own thresholds, storm
// action and posters; a message to lists gets the strictest of them
// (Effective). This file is the one home of those rules and of the text
// form operators write in the config file (list_policy) and in Redis
// (hash stormguard:listpolicy): "max_replies=3;posters=comms@example.org".

// Opt is a setting a list may leave unset (the site's applies).
type Opt[T int | int64] struct {
	V   T
	Set bool
}

// Some is a set Opt.
func Some[T int | int64](v T) Opt[T] { return Opt[T]{V: v, Set: true} }

// ListPolicy is one list's own policy. A field left unset is the site's.
type ListPolicy struct {
	MinAudience    Opt[int]   // policy.min_audience for a message to this list
	MaxReplies     Opt[int]   // policy.max_replies; 0 turns the rule off for this list
	DeliveryBudget Opt[int64] // policy.delivery_budget; 0 turns the rule off for this list
	Action         ConfigAction
	// Posters, when not empty, gate the list: a message to it is
	// accepted only from one of them (senders, @domains or SASL logins,
	// lower case), a site poster (gate.posters, stormguard:posters) or an
	// exempt sender, whatever its audience. See ListGated.
	Posters []string
}

// IsZero reports whether p sets nothing: the list follows the site.
func (p ListPolicy) IsZero() bool {
	return !p.MinAudience.Set && !p.MaxReplies.Set && !p.DeliveryBudget.Set && p.Action == "" && len(p.Posters) == 0
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
	first := true
	for _, p := range lists {
		minAud, maxRep, budget, act := site.MinAudience, site.Limits.MaxReplies, site.Limits.DeliveryBudget, site.Action
		if p.MinAudience.Set {
			minAud = p.MinAudience.V
		}
		if p.MaxReplies.Set {
			maxRep = p.MaxReplies.V
		}
		if p.DeliveryBudget.Set {
			budget = p.DeliveryBudget.V
		}
		if p.Action != "" {
			act = p.Action
		}
		if first {
			c.MinAudience, c.Limits.MaxReplies, c.Limits.DeliveryBudget, c.Action = minAud, maxRep, budget, act
			first = false
			continue
		}
		c.MinAudience = min(c.MinAudience, minAud)
		c.Limits.MaxReplies = stricter(c.Limits.MaxReplies, maxRep)
		c.Limits.DeliveryBudget = stricter(c.Limits.DeliveryBudget, budget)
		if actionRank[act] > actionRank[c.Action] {
			c.Action = act
		}
	}
	return c
}

// stricter is the stricter of two limits where 0 means off.
func stricter[T int | int64](a, b T) T {
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

// ListPolicy's text form keys.
const (
	lpMinAudience    = "min_audience"
	lpMaxReplies     = "max_replies"
	lpDeliveryBudget = "delivery_budget"
	lpAction         = "action"
	lpPosters        = "posters"
)

// ParseListPolicy reads a list's policy as operators write it:
// "key=value" pairs separated by ";", keys min_audience, max_replies,
// delivery_budget (whole numbers, 0 to 2^53; 0 turns a limit off for the
// list), action (reject, tempfail, hold or monitor) and posters (senders,
// @domains or SASL logins separated by ","). Space around keys and values
// is ignored; "" is the zero policy. Every mistake is reported, each
// naming its key.
func ParseListPolicy(s string) (ListPolicy, error) {
	var p ListPolicy
	var errs []error
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok {
			errs = append(errs, fmt.Errorf("%q: want key=value", part))
			continue
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: given twice", k))
			continue
		}
		seen[k] = true
		num := func() (int64, bool) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > MaxLimit {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number from 0 to 2^53", k, v))
				return 0, false
			}
			return n, true
		}
		switch k {
		case lpMinAudience:
			if n, ok := num(); ok {
				p.MinAudience = Some(int(n))
			}
		case lpMaxReplies:
			if n, ok := num(); ok {
				p.MaxReplies = Some(int(n))
			}
		case lpDeliveryBudget:
			if n, ok := num(); ok {
				p.DeliveryBudget = Some(n)
			}
		case lpAction:
			switch a := ConfigAction(strings.ToLower(v)); a {
			case ConfigReject, ConfigTempfail, ConfigHold, ConfigMonitor:
				p.Action = a
			default:
				errs = append(errs, fmt.Errorf("action: %q is not reject, tempfail, hold or monitor", v))
			}
		case lpPosters:
			for _, a := range strings.Split(v, ",") {
				a = strings.ToLower(strings.TrimSpace(a))
				if a == "" || strings.ContainsAny(a, " \t\r\n\"'") {
					errs = append(errs, fmt.Errorf("posters: %q is not a sender, @domain or SASL login", a))
					continue
				}
				p.Posters = append(p.Posters, a)
			}
		default:
			errs = append(errs, fmt.Errorf("%q is not min_audience, max_replies, delivery_budget, action or posters", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ListPolicy{}, err
	}
	return p, nil
}

// String is p's text form, as ParseListPolicy reads it, its keys in a
// fixed order; "" for the zero policy.
func (p ListPolicy) String() string {
	var b []string
	if p.MinAudience.Set {
		b = append(b, lpMinAudience+"="+strconv.Itoa(p.MinAudience.V))
	}
	if p.MaxReplies.Set {
		b = append(b, lpMaxReplies+"="+strconv.Itoa(p.MaxReplies.V))
	}
	if p.DeliveryBudget.Set {
		b = append(b, lpDeliveryBudget+"="+strconv.FormatInt(p.DeliveryBudget.V, 10))
	}
	if p.Action != "" {
		b = append(b, lpAction+"="+string(p.Action))
	}
	if len(p.Posters) > 0 {
		b = append(b, lpPosters+"="+strings.Join(p.Posters, ","))
	}
	return strings.Join(b, ";")
}
