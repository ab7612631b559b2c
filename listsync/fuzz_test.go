package listsync

import (
	"testing"
)

// FuzzMapDump: whatever a map dump holds, reading and counting it never
// panics, and no list is counted larger than the targets it could reach.
func FuzzMapDump(f *testing.F) {
	f.Add("staff:\talice, bob\neveryone:\tstaff, \"|cmd, x\", /file\n", true)
	f.Add("a@x.org\tb@x.org, a@x.org\nb@x.org\ta@x.org\n", false)
	f.Add("@:\t@\nYP_X:\t1\nx\n\t\n:\t\n\"q\"@:\t\\\x1b[31m,\r\n", true)
	f.Fuzz(func(t *testing.T, dump string, alias bool) {
		g := &mapGraph{nodes: map[string][]string{}, lists: map[string][]string{}, locals: map[string]bool{"example.org": true}, domain: "example.org"}
		g.read([]byte(dump), alias)
		g.unescape()
		targets := 0
		for _, kids := range g.nodes {
			targets += len(kids)
		}
		for node := range g.lists {
			if n := expand(node, func(s string) ([]string, bool) { k, ok := g.nodes[s]; return k, ok }); n > targets {
				t.Fatalf("%s: %d members from %d targets", node, n, targets)
			}
		}
	})
}
