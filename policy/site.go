package policy

import "strings"

// Site is the site's settings a message is decided under (Site.Plan): the
// policy configuration, the mode, the registered lists with their own
// policies, how recipients resolve, the exempt senders and the sender
// gate's posters. It is built
// once for each reload or refresh of the settings, then only read, so
// that concurrent messages share it.
type Site struct {
	Config Config
	Mode   Mode           // "" is enforce
	Lists  map[string]int // registered lists' member counts, by lower-case address
	// Exempt are the exempt senders (policy.exempt_senders,
	// stormguard:exempt); Posters who may pass the sender gate
	// (gate.posters, stormguard:posters).
	Exempt, Posters Senders
	// SenderAuth: a sender or @domain entry of Exempt, Posters or a list's
	// posters matches only a Trusted envelope (an SMTP client that
	// authenticated or connects from a trusted network); false: any
	// envelope sender, which anyone can forge. SASL login entries match
	// the login either way.
	SenderAuth bool
	// Policies are the lists' own policies, by lower-case address (SetList);
	// nil when no list has one.
	Policies map[string]ListRules
	// Recipients is how the MTA resolves a recipient address
	// (policy.recipient_delimiter, policy.local_domains): every form of
	// a list's address is looked up as the list.
	Recipients Recipients
}

// ListRules is a list's own policy with its posters ready to match.
type ListRules struct {
	ListPolicy
	posters Senders
}

// SetList gives the list addr its own policy p; the zero policy removes
// it, and the list follows the site. Call it while building s, never on
// a Site in use.
func (s *Site) SetList(addr string, p ListPolicy) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if p.IsZero() {
		delete(s.Policies, addr)
		return
	}
	lr := ListRules{ListPolicy: p}
	if len(p.Posters) > 0 {
		lr.posters = Senders{}
		lr.posters.Add(p.Posters...)
	}
	if s.Policies == nil {
		s.Policies = map[string]ListRules{}
	}
	s.Policies[addr] = lr
}

// senderMatch reports whether env's sender is in set, and may be taken as
// said (SenderAuth).
func (s *Site) senderMatch(set Senders, env Envelope) bool {
	return (!s.SenderAuth || env.Trusted) && set.Match(env.Sender)
}

// Senders is a set of senders, @domains and SASL logins, lower case: the
// exempt senders, the sender gate's posters, a list's own posters.
type Senders map[string]struct{}

// Add puts entries in the set, lower case and trimmed.
func (s Senders) Add(entries ...string) {
	for _, e := range entries {
		s[strings.ToLower(strings.TrimSpace(e))] = struct{}{}
	}
}

// Match reports whether an envelope sender is in the set, exactly or by
// its "@domain".
func (s Senders) Match(sender string) bool {
	if len(s) == 0 || sender == "" {
		return false
	}
	sender = strings.ToLower(sender)
	if _, ok := s[sender]; ok {
		return true
	}
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		_, ok := s[sender[i:]]
		return ok
	}
	return false
}

// Login reports whether a SASL login ({auth_authen}) is in the set, as
// written (lower case): an entry "jdoe" or "jdoe@example.org" names the
// login jdoe or jdoe@example.org; an @domain entry names senders only.
func (s Senders) Login(user string) bool {
	if len(s) == 0 || user == "" {
		return false
	}
	user = strings.ToLower(strings.TrimSpace(user))
	if strings.HasPrefix(user, "@") {
		return false
	}
	_, ok := s[user]
	return ok
}
