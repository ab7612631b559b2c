package policy

import (
	"errors"
	"strings"
	"unicode"
)

// Recipient addresses are looked up as the MTA resolves them, so that every
// form of a list's address that reaches its members is that list: for the
// audience, the lists' own policies, their posters and the sender gate.
// This file is the one home of those forms.

// Recipients is how the site's MTA resolves an envelope recipient before
// a list expands (policy.recipient_delimiter, policy.local_domains).
type Recipients struct {
	// Delimiter holds the characters any of which starts an address
	// extension, as Postfix's recipient_delimiter: everyone+x@example.org
	// reaches everyone@example.org. Empty: addresses have no extension.
	Delimiter string
	// LocalDomains are the site's own domains, lower case: a bare local
	// name (RCPT TO:<everyone>, which Postfix qualifies with $myorigin)
	// is the list of that name in the first of them that has one, else
	// the address in the first. Empty: a bare name stays as it is and
	// names no list.
	LocalDomains []string
}

// Validate reports a delimiter or local domain that cannot be one.
func (r Recipients) Validate() error {
	if strings.ContainsAny(r.Delimiter, "@\"\\<>()[],;: \t\r\n") {
		return errors.New("policy.recipient_delimiter: " + quote(r.Delimiter) + " holds a character that cannot start an address extension")
	}
	for _, d := range r.LocalDomains {
		if d == "" || strings.ContainsAny(d, "@\"\\<>()[],;: \t\r\n") {
			return errors.New("policy.local_domains: " + quote(d) + " is not a domain")
		}
	}
	return nil
}

func quote(s string) string { return "\"" + s + "\"" }

// CanonicalAddress is an address in the form the MTA resolves it to, lower
// case: surrounding space and angle brackets off, a source route
// (@hop.example.net,@hop2:) off, a quoted local part unquoted
// ("everyone"@example.org is everyone@example.org), and the trailing dots
// of a root-qualified domain off (example.org. is example.org). A bare
// local name stays bare; an extension stays (Recipients.Resolve decides
// about both, since the MTA tries the whole address first). An address
// already in this form is returned as it is, without allocating.
func CanonicalAddress(a string) string {
	a = strings.ToLower(strings.TrimSpace(a))
	for {
		if strings.HasPrefix(a, "<") {
			a = strings.TrimSpace(strings.TrimSuffix(a[1:], ">"))
			continue
		}
		if i := routeEnd(a); i > 0 { // a source route: @hop1,@hop2:local@domain
			a = strings.TrimSpace(a[i:])
			continue
		}
		break
	}
	local, domain, bare := splitAddress(a)
	if strings.ContainsAny(local, "\"\\") {
		local = unquote(local)
	} else if !strings.HasSuffix(domain, ".") {
		return a // nothing to change
	}
	domain = strings.TrimRightFunc(domain, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
	if bare {
		return local
	}
	return local + "@" + domain
}

// routeEnd is where the mailbox starts in a source-routed a (one that
// starts with '@'): after the ':' that ends the route, outside any [domain
// literal]; 0 when a is no route.
func routeEnd(a string) int {
	if !strings.HasPrefix(a, "@") {
		return 0
	}
	literal := false
	for i := 0; i < len(a); i++ {
		switch a[i] {
		case '[':
			literal = true
		case ']':
			literal = false
		case ':':
			if !literal {
				return i + 1
			}
		case '"':
			return 0 // a quoted local part before any ':': not a route
		}
	}
	return 0
}

// splitAddress splits a at its last '@' outside quotes; bare says it has
// none.
func splitAddress(a string) (local, domain string, bare bool) {
	at, quoted := -1, false
	for i := 0; i < len(a); i++ {
		switch a[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case '@':
			if !quoted {
				at = i
			}
		}
	}
	if at < 0 {
		return a, "", true
	}
	return a[:at], a[at+1:], false
}

// unquote removes the quotes and backslash escapes of a local part that
// needs none: "everyone" is everyone. One that does ("every one",
// "a@b") stays as written, so that what it holds is never read as an
// address's '@', route or quotes.
func unquote(local string) string {
	var b strings.Builder
	b.Grow(len(local))
	for i := 0; i < len(local); i++ {
		switch c := local[i]; c {
		case '"':
		case '\\':
			if i+1 < len(local) {
				i++
				b.WriteByte(local[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	if u := b.String(); u != "" && !strings.ContainsFunc(u, needsQuotes) {
		return u
	}
	return local
}

// needsQuotes reports whether a local part holding r must be quoted.
func needsQuotes(r rune) bool {
	return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || strings.ContainsRune("()<>[]:;@\\,\"", r)
}

// Resolve is the address recipient a is looked up as: its CanonicalAddress,
// qualified with a local domain if it is a bare name, and without its
// extension unless the whole address is itself known. known reports
// whether an address names a list (registered or with a policy). As
// Postfix, the whole address is tried before the one without its
// extension, and no extension is taken off a local part that starts with
// a delimiter, nor off owner-x or x-request when '-' is a delimiter.
func (r Recipients) Resolve(a string, known func(string) bool) string {
	a = CanonicalAddress(a)
	local, domain, bare := splitAddress(a)
	if !bare {
		if known(a) {
			return a
		}
		if base, ok := r.base(local); ok {
			return base + "@" + domain
		}
		return a
	}
	if a == "" || len(r.LocalDomains) == 0 {
		return a
	}
	base, cut := r.base(local)
	for _, d := range r.LocalDomains {
		d = strings.ToLower(d)
		if q := local + "@" + d; known(q) {
			return q
		}
		if q := base + "@" + d; cut && known(q) {
			return q
		}
	}
	return base + "@" + strings.ToLower(r.LocalDomains[0])
}

// base is local without its extension, and whether it had one.
func (r Recipients) base(local string) (string, bool) {
	if r.Delimiter == "" {
		return local, false
	}
	i := strings.IndexAny(local, r.Delimiter)
	if i <= 0 { // none, or the first character: not an extension
		return local, false
	}
	if strings.Contains(r.Delimiter, "-") && (strings.HasPrefix(local, "owner-") || strings.HasSuffix(local, "-request")) {
		return local, false
	}
	return local[:i], true
}

// resolveAll is Resolve over addrs under the site's lists: addrs itself
// when every address resolves to itself (most mail: nothing allocated),
// else a copy with the resolved addresses.
func (s *Site) resolveAll(addrs []string) []string {
	var out []string
	known := s.known
	for i, a := range addrs {
		r := s.Recipients.Resolve(a, known)
		if out == nil && r != a {
			out = make([]string, len(addrs))
			copy(out, addrs[:i])
		}
		if out != nil {
			out[i] = r
		}
	}
	if out == nil {
		return addrs
	}
	return out
}

// known reports whether a names a list: registered, or with a policy of
// its own.
func (s *Site) known(a string) bool {
	if _, ok := s.Lists[a]; ok {
		return true
	}
	_, ok := s.Policies[a]
	return ok
}
