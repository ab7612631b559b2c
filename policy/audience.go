package policy

import (
	"math"
	"slices"
	"strings"
)

// Audience returns the number of mailboxes a message reaches and the
// registered lists among its recipients.
//
// Each side, the envelope recipients (RCPT TO) and the header recipients
// (To and Cc: Message.Recipients, as Parse gives them), counts its distinct
// addresses: a registered list counts its member count (lists[addr]; at
// least 1), any other address 1. The larger side wins, so the count is
// right both before alias expansion (the list is one RCPT) and after it
// (the members are). large holds the sorted, distinct addresses of either
// side that are registered lists.
//
// Addresses are compared lower case without angle brackets; the keys of
// lists must be lower case. The sum saturates instead of overflowing.
func Audience(env, hdr []string, lists map[string]int) (audience int, large []string) {
	side := func(addrs []string) int {
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
				if !slices.Contains(large, a) {
					large = append(large, a)
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
	audience = max(side(env), side(hdr))
	slices.Sort(large)
	return audience, large
}

// normAddr lower-cases an address and strips surrounding space and angle
// brackets: " <All-Staff@Example.org>" gives "all-staff@example.org".
func normAddr(a string) string {
	a = strings.TrimSpace(a)
	a = strings.TrimPrefix(a, "<")
	a = strings.TrimSuffix(a, ">")
	return strings.ToLower(strings.TrimSpace(a))
}
