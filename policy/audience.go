package policy

import (
	"math"
	"slices"
	"strings"
)

// Audience returns the number of mailboxes a message reaches by its
// recipients on either side, and the registered lists among them.
//
// Each side, the envelope recipients (RCPT TO) and the header recipients
// (To and Cc: Message.Recipients, as Parse gives them), counts its distinct
// addresses: a registered list counts its member count (lists[addr]; at
// least 1), any other address 1. The larger side wins, so the count is
// right both before alias expansion (the list is one RCPT) and after it
// (the members are). large holds the sorted, distinct addresses of either
// side that are registered lists.
//
// The header side is only what the sender wrote: Config.Audience is the
// audience decisions use, which counts it only with SplitEnvelopes.
//
// Addresses are compared lower case without angle brackets; the keys of
// lists must be lower case. The sum saturates instead of overflowing.
func Audience(env, hdr []string, lists map[string]int) (audience int, large []string) {
	audience = max(side(env, lists, &large), side(hdr, lists, &large))
	slices.Sort(large)
	return audience, large
}

// Audience is the audience a decision uses: the envelope's, where a
// registered list among the envelope recipients counts its members, so
// that a message counts toward, or blocks, a thread only with the
// mailboxes it really reaches; whatever lists a forged To or Cc header
// names reach nobody. With SplitEnvelopes (policy.split_envelopes: the
// MTA hands this node one message to a list as many transactions of a few
// recipients each, so the envelope under-states the audience) it is
// Audience's, the larger of the envelope's and the header's.
//
// large, the registered lists of either side, is for the message's
// identity (Identify's subject key), never for its count.
func (c Config) Audience(env, hdr []string, lists map[string]int) (audience int, large []string) {
	if c.SplitEnvelopes {
		return Audience(env, hdr, lists)
	}
	audience = side(env, lists, &large)
	side(hdr, lists, &large)
	slices.Sort(large)
	return audience, large
}

// side counts one side's distinct addresses, a registered list as its
// members, and adds the lists among them to *large.
func side(addrs []string, lists map[string]int, large *[]string) int {
	n := 0
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		a = normAddr(a)
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		size := 1
		if m, ok := lists[a]; ok {
			size = max(m, 1)
			if !slices.Contains(*large, a) {
				*large = append(*large, a)
			}
		}
		if n > math.MaxInt-size {
			n = math.MaxInt
		} else {
			n += size
		}
	}
	return n
}

// normAddr lower-cases an address and strips surrounding space and angle
// brackets: " <All-Staff@Example.org>" gives "all-staff@example.org".
func normAddr(a string) string {
	a = strings.TrimSpace(a)
	a = strings.TrimPrefix(a, "<")
	a = strings.TrimSuffix(a, ">")
	return strings.ToLower(strings.TrimSpace(a))
}
