package policy

import (
	"slices"
	"strings"
)

// A message is decided in two steps, with the store in between:
//
//  1. Site.Plan, from the envelope and the headers under the site's
//     settings: the audience, the policy of the lists the message goes
//     to (Effective), the sender gate, whether the store is needed, and
//     if so what to record and look up;
//  2. Plan.Decide, from the store's Answer (its Tally, or how it failed)
//     to the verdict.
//
// The caller makes the store calls in between (Identity.Lookup, Resolve,
// the record under Plan.Kind and Plan.Config.Limits) and chooses what a
// failure means (Answer.Failed).

// Envelope is what the MTA tells about a message besides its headers.
type Envelope struct {
	Sender   string   // envelope sender, lower case
	Rcpts    []string // envelope recipients, lower case
	AuthUser string   // {auth_authen}: the SASL login, when the client authenticated
	// Trusted: the client authenticated (SASL) or connects from a trusted
	// network, so its envelope sender is taken as said (Site.SenderAuth).
	Trusted bool
}

// MaxLists bounds Plan.Lists: a message to more registered lists is
// reported with the first MaxLists of them, in envelope order.
const MaxLists = 16

// Plan is what policy makes of a message before the store is asked.
type Plan struct {
	// Config is the message's policy: the site's, its lists' own
	// merged over it (Effective) when any has one.
	Config Config
	Facts  Facts
	// Store says the verdict needs the store: the caller records the
	// message as the fields below say and passes the store's answer to
	// Decide. Without it, Verdict is the verdict.
	Store   bool
	Verdict Verdict
	// Subject is the subject as written (decoded, one line), for reports
	// and events: set with Store, and with a gate verdict.
	Subject string
	// List, with a gate verdict: the list whose own posters exclude the
	// sender, else the largest registered list the message was sent to.
	List string

	// With Store, what to record: the message's identities (what to
	// look up, Resolve, and link), its kind, and the registered lists
	// among its envelope recipients (at most MaxLists, in envelope
	// order) for the history. It is counted under Config.Limits.
	Identity Identity
	Kind     Kind
	Lists    []string
}

// Plan is the plan for one message: env and h are what the MTA gave, h
// parsed here, once (Parse), and neither kept nor changed. Its audience
// is Config.Audience's; its policy the site's, or with lists that have
// their own the strictest merge (Effective) over the lists it goes to:
// its envelope recipients, and with SplitEnvelopes also its header's (a
// list a forged header names reaches nobody, so its policy must not
// apply).
func (s *Site) Plan(env Envelope, h *Headers) (p Plan) {
	pm := Parse(*h) // the message's one parse
	// Every list lookup below sees each recipient as the MTA resolves
	// it (Recipients.Resolve): everyone+x@, "everyone"@, everyone@domain.,
	// a bare everyone and a source-routed one are all the list everyone@.
	env.Rcpts = s.resolveAll(env.Rcpts)
	hdr := s.resolveAll(pm.Recipients)
	audience, large := s.Config.Audience(env.Rcpts, hdr, s.Lists)
	p.Config = s.Config
	p.Facts = Facts{
		Mode:      s.Mode,
		Exempt:    s.senderMatch(s.Exempt, env),
		Poster:    s.senderMatch(s.Posters, env) || s.Posters.Login(env.AuthUser),
		AutoReply: IsAutoReply(pm),
		Audience:  audience,
	}
	gatedBy := ""
	if len(s.Policies) > 0 { // else nothing to look up: no cost
		p.Config, p.Facts.ListGated, gatedBy = s.listPolicy(env, hdr, p.Facts.Poster)
	}
	if v, ok := known(p.Config, p.Facts); ok { // !NeedsStore
		p.Verdict = v
		if v.Rule == RuleGate {
			p.List = gatedBy
			if !p.Facts.ListGated {
				p.List = largestList(env.Rcpts, large, s.Lists)
			}
			p.Subject = pm.Subject.Display
		}
		return p
	}
	p.Store = true
	p.Identity = Identify(pm, large)
	p.Facts.Reply = p.Identity.Reply
	p.Subject = p.Identity.Display
	p.Kind = KindOf(s.Config, p.Facts)
	p.Lists = registeredLists(env.Rcpts, s.Lists)
	return p
}

// Answer is the store's answer for a message a Plan records: its Tally,
// or, with Failed, that no store counted it and what that means.
type Answer struct {
	Tally  Tally
	Failed Failure
}

// Failure is what a store failure means for the message
// (store.on_error): fail open or tempfail.
type Failure string

const (
	FailOpen     Failure = "accept"   // accept (rule store_error): nothing counted the message
	FailTempfail Failure = "tempfail" // OnStoreError's verdict
)

// Decide is the verdict on the planned message from the store's answer;
// for a plan without Store, the Verdict it holds.
func (p *Plan) Decide(a Answer) Verdict {
	if !p.Store {
		return p.Verdict
	}
	return Decide(p.Config, p.Facts, a)
}

// listPolicy is the policy for a message under the lists' own policies
// (Effective over the registered lists it goes to, a list without a policy
// of its own counting as the site's, so that a lax list beside it never
// loosens it), whether a list's own posters stop its sender (ListGated:
// poster says it is a site poster), and the first list that does. The
// lists it goes to are its envelope recipients', and with SplitEnvelopes
// also its header's (hdr), as for its audience (Config.Audience). A
// message to no list with a policy gets the site's. It allocates nothing
// for a message to at most 4 registered lists.
func (s *Site) listPolicy(env Envelope, hdr []string, poster bool) (c Config, gated bool, gatedBy string) {
	var buf [4]ListPolicy
	lists := buf[:0]
	own := false // some list has its own policy
	add := func(addrs []string) {
		for _, a := range addrs { // resolved by Plan: canonical, lower case
			lp, ok := s.Policies[a]
			if !ok {
				if _, registered := s.Lists[a]; registered {
					lists = append(lists, ListPolicy{}) // the site's
				}
				continue
			}
			own = true
			lists = append(lists, lp.ListPolicy)
			allowed := poster || s.senderMatch(lp.posters, env) || lp.posters.Login(env.AuthUser)
			if ListGated(lp.ListPolicy, allowed) && !gated {
				gated, gatedBy = true, a
			}
		}
	}
	add(env.Rcpts)
	if s.Config.SplitEnvelopes {
		add(hdr)
	}
	if !own {
		return s.Config, gated, gatedBy
	}
	return Effective(s.Config, lists), gated, gatedBy
}

// largestList is the registered list with the most members among the
// envelope recipients, or else among large (the header's).
func largestList(rcpts, large []string, lists map[string]int) string {
	best, n := "", 0
	pick := func(addrs []string) {
		for _, a := range addrs {
			a = strings.Trim(a, "<> ")
			if m, ok := lists[a]; ok && (m > n || best == "") {
				best, n = a, m
			}
		}
	}
	pick(rcpts)
	if best == "" {
		pick(large)
	}
	return best
}

// registeredLists are the registered lists among the envelope recipients,
// each once, in envelope order, at most MaxLists.
func registeredLists(rcpts []string, lists map[string]int) []string {
	var out []string
	for _, a := range rcpts { // resolved by Plan: canonical, lower case
		if _, ok := lists[a]; ok && !slices.Contains(out, a) {
			if out = append(out, a); len(out) == MaxLists {
				break
			}
		}
	}
	return out
}
