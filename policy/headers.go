package policy

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// The header parsers: message-ids, address lists and the unfolding they
// share. Each takes one raw value as the milter collected it and gives a
// bounded, sane result for any input, however hostile. Parse (message.go)
// runs each of them once per message.

// Parsing limits. A header that goes past them is cut, never rejected.
const (
	maxHeaderBytes    = 256 << 10 // bytes of one raw header value examined
	maxMessageIDBytes = 500       // a longer "id" is no message-id (no client writes one)
	idListEnds        = 10        // ids kept from each end of one References / In-Reply-To
	maxIDs            = 2 * idListEnds
	maxAddressBytes   = 320   // RFC 5321: 64 + "@" + 255; longer ones are dropped
	maxAddresses      = 10000 // distinct addresses kept from To and Cc together
)

// unfold undoes header folding: it drops every CR and LF, as RFC 5322
// §2.2.3 unfolding does (a bare CR or LF is garbage and goes too), and
// trims surrounding spaces and tabs. Values longer than maxHeaderBytes are
// cut first, on a rune boundary.
func unfold(v string) string {
	if len(v) > maxHeaderBytes {
		v = cutBytes(v, maxHeaderBytes)
	}
	if strings.ContainsAny(v, "\r\n") {
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, v)
	}
	return strings.Trim(v, " \t")
}

// cutBytes returns at most n bytes of s, not splitting a UTF-8 sequence.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// ParseMessageID returns the first message-id in v: the content of the
// first <...> pair that is a usable id, or a bare token that is one (see
// ParseIDList). ok is false when v holds no usable id.
func ParseMessageID(v string) (id string, ok bool) {
	eachID(unfold(v), func(s string) bool {
		id, ok = s, true
		return false
	})
	return id, ok
}

// ParseIDList returns the message-ids of a References or In-Reply-To value
// in order, each once (at its first place), at most its first 10 and its
// last 10: a long References keeps both its root (RFC 5322 order: the
// root first) and the nearest ancestors (the parent last; some clients
// write them newest first, and that end is kept too).
//
// Each id is what stood between "<" and ">" (or a bare token outside
// brackets, which some web forms send), with whitespace and control
// characters removed and its domain part (after the last "@") in lower
// case: domains are case-insensitive, the left part is kept as it is. An
// id without a local part and a domain around its "@" ("<yes>", "<1234>",
// "<@x>"), or longer than 500 bytes, is no message-id: it is dropped, so
// that it can neither name a thread nor be linked to one (a common word
// taken as a thread root would join unrelated messages). Comments "(...)"
// and quoted phrases outside brackets (obsolete In-Reply-To forms) are
// skipped.
func ParseIDList(v string) []string {
	var ids []string
	var tail [idListEnds]string // a ring of the last ids past the first idListEnds
	n := 0                      // ids in tail; the oldest is at next-n
	next := 0
	eachID(unfold(v), func(id string) bool {
		if slices.Contains(ids, id) {
			return true
		}
		for i := range n {
			if tail[(next-n+i+idListEnds)%idListEnds] == id {
				return true
			}
		}
		if len(ids) < idListEnds {
			ids = append(ids, id)
			return true
		}
		tail[next] = id
		next = (next + 1) % idListEnds
		n = min(n+1, idListEnds)
		return true
	})
	for i := range n {
		ids = append(ids, tail[(next-n+i+idListEnds)%idListEnds])
	}
	return ids
}

// eachID is the one tokenizer behind ParseMessageID and ParseIDList, so
// that an id in References and the same id in Message-ID normalise alike.
// It calls yield with each usable id of s (cleanID) in order, until yield
// returns false.
func eachID(s string, yield func(id string) bool) {
	skip := skipper{s: s}
	add := func(raw string) bool {
		if id := cleanID(raw); id != "" {
			return yield(id)
		}
		return true
	}
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '<':
			// The id runs to the next '>'. A '<' before it restarts; no
			// '>' at all takes the rest of the token (a truncated header).
			j := i + 1
			for j < len(s) && s[j] != '>' && s[j] != '<' {
				j++
			}
			switch {
			case j < len(s) && s[j] == '<':
				i = j
			case j < len(s):
				if !add(s[i+1 : j]) {
					return
				}
				i = j + 1
			default:
				end := i + 1
				for end < len(s) && !isSpace(s[end]) {
					end++
				}
				if !add(s[i+1 : end]) {
					return
				}
				i = end
			}
		case c == '(':
			i = skip.comment(i)
		case c == '"':
			i = skip.quoted(i)
		case isSpace(c) || c == ',' || c == '>' || c == ')':
			i++
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) && !strings.ContainsRune("<>(),\"", rune(s[j])) {
				j++
			}
			if !add(s[i:j]) {
				return
			}
			i = j
		}
	}
}

// cleanID removes whitespace and control characters and lower-cases the
// domain part; it returns "" for what is no message-id: nothing on either
// side of the last "@", or longer than maxMessageIDBytes.
func cleanID(raw string) string {
	if len(raw) > 4*maxMessageIDBytes {
		return "" // too long even before cleaning: spare the copy
	}
	id := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, raw)
	at := strings.LastIndexByte(id, '@')
	if at <= 0 || at == len(id)-1 {
		return ""
	}
	if domain := strings.ToLower(id[at+1:]); domain != id[at+1:] {
		id = id[:at+1] + domain
	}
	if len(id) > maxMessageIDBytes || !utf8.ValidString(id) {
		return ""
	}
	return id
}

// skipper skips RFC 5322 comments and quoted strings in one header value.
// An unclosed one skips only its opening character; once one was found
// unclosed, later ones are not searched for again, so that hostile input
// ("((((…") costs linear time, not quadratic.
type skipper struct {
	s                  string
	noComment, noQuote bool
}

// comment returns the index after the comment that opens at s[i] ('('),
// honouring nesting and backslash escapes.
func (k *skipper) comment(i int) int {
	if k.noComment {
		return i + 1
	}
	depth := 0
	for j := i; j < len(k.s); j++ {
		switch k.s[j] {
		case '\\':
			j++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	k.noComment = true
	return i + 1
}

// quoted returns the index after the quoted string that opens at s[i] ('"').
func (k *skipper) quoted(i int) int {
	if k.noQuote {
		return i + 1
	}
	for j := i + 1; j < len(k.s); j++ {
		switch k.s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	k.noQuote = true
	return i + 1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// ParseAddressList returns the bare addresses of To and Cc values, lower
// case, without duplicates, in order of first appearance, at most 10,000.
//
// It is tolerant rather than strict: display names (quoted or not, RFC 2047
// encoded or not), comments, groups ("all: a@x, b@y;"), route prefixes,
// missing commas and unbalanced brackets or quotes all give the addresses a
// human would read. Only strings of the form local@domain count; a bare
// local part ("postmaster") is not an address here. A quoted local part in
// angle brackets (<"everyone"@example.org>) is unquoted when it needs no
// quotes (CanonicalAddress), else dropped. Addresses longer than 320
// bytes are dropped.
func ParseAddressList(values []string) []string {
	return parseAddresses(values)
}

// parseAddresses is ParseAddressList over several lists of values taken
// one after the other (To's, then Cc's), without joining them first.
func parseAddresses(lists ...[]string) []string {
	var out []string
	seen := make(map[string]bool)
	add := func(a string) {
		if a = cleanAddress(a); a != "" && !seen[a] && len(out) < maxAddresses {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, values := range lists {
		for _, v := range values {
			scanAddresses(unfold(v), add)
			if len(out) >= maxAddresses {
				return out
			}
		}
	}
	return out
}

// scanAddresses splits s into mailboxes at top-level ',' ';' and ':' (the
// end of a group's name) and passes each mailbox's address to add: the
// content of its <...> if it has one, else each bare word with an "@".
func scanAddresses(s string, add func(string)) {
	skip := skipper{s: s}
	var angles []string // <...> contents in the current mailbox
	var words []string  // bare words in the current mailbox
	flush := func() {
		if len(angles) > 0 {
			for _, a := range angles {
				add(a)
			}
		} else {
			for _, w := range words {
				if strings.Contains(w, "@") {
					add(w)
				}
			}
		}
		angles, words = angles[:0], words[:0]
	}
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ',' || c == ';':
			flush()
			i++
		case c == ':':
			// A group name or a stray colon: what came before is a phrase.
			angles, words = angles[:0], words[:0]
			i++
		case c == '"':
			i = skip.quoted(i)
		case c == '(':
			i = skip.comment(i)
		case c == '<':
			j := i + 1
			for j < len(s) && s[j] != '>' && s[j] != '<' {
				j++
			}
			if j < len(s) && s[j] == '>' {
				a := s[i+1 : j]
				if k := strings.LastIndexByte(a, ':'); k >= 0 {
					a = a[k+1:] // route: <@relay1,@relay2:user@host>
				}
				angles = append(angles, a)
				i = j + 1
			} else {
				i++ // unbalanced: ignore the '<'
			}
		case isSpace(c) || c == '>' || c == ')':
			i++
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) && !strings.ContainsRune(",;:\"(<>)", rune(s[j])) {
				j++
			}
			words = append(words, s[i:j])
			i = j
		}
	}
	flush()
}

// cleanAddress trims and lower-cases one address and checks that it looks
// like local@domain with nothing odd in it; it returns "" otherwise.
func cleanAddress(a string) string {
	if len(a) > 4*maxAddressBytes {
		return ""
	}
	a = strings.ToLower(strings.TrimSpace(a))
	a = strings.TrimPrefix(a, "mailto:")
	if strings.HasPrefix(a, "\"") {
		a = CanonicalAddress(a) // "everyone"@example.org is everyone@example.org; one that needs its quotes is dropped below
	}
	a = strings.TrimRight(a, ".") // a root-qualified domain: example.org.
	if len(a) < 3 || len(a) > maxAddressBytes || !utf8.ValidString(a) {
		return ""
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || strings.HasPrefix(a, "=?") {
		return "" // no local part, no domain, or an RFC 2047 encoded word
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError || strings.ContainsRune("<>()[],;:\"\\", r) {
			return ""
		}
	}
	return a
}
