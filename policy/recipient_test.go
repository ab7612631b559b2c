package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCanonicalAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"everyone@example.org", "everyone@example.org"},
		{" <Everyone@Example.ORG> ", "everyone@example.org"},
		{`"everyone"@example.org`, "everyone@example.org"},
		{`"ev\ery"@example.org`, "every@example.org"},
		{`<"Every One"@example.org>`, `"every one"@example.org`}, // needs its quotes: kept
		{`"ever\"yone"@example.org`, `"ever\"yone"@example.org`},
		{`"a@b"@example.org.`, `"a@b"@example.org`},
		{`"@hop:everyone"@example.org`, `"@hop:everyone"@example.org`},
		{"<<everyone@example.org>>", "everyone@example.org"},
		{"@a:@b:everyone@example.org", "everyone@example.org"},
		{"everyone@example.org.", "everyone@example.org"},
		{"everyone@example.org..", "everyone@example.org"},
		{"@hop.example.net:everyone@example.org", "everyone@example.org"},
		{"<@hop1.example.net,@hop2.example.net:everyone@example.org.>", "everyone@example.org"},
		{"@[IPv6:::1]:everyone@example.org", "everyone@example.org"},
		{`@hop.example.net:"everyone"@example.org`, "everyone@example.org"},
		{"everyone", "everyone"},
		{`"everyone"`, "everyone"},
		{"everyone+x@example.org", "everyone+x@example.org"}, // Resolve takes extensions off
		{"", ""},
		{"<>", ""},
		{"@example.org", "@example.org"}, // no ':': no route
	}
	for _, tt := range tests {
		if got := CanonicalAddress(tt.in); got != tt.want {
			t.Errorf("CanonicalAddress(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRecipientsResolve(t *testing.T) {
	lists := map[string]bool{
		"everyone@example.org":    true,
		"sales@example.com":       true,
		"owner-x@example.org":     true,
		"dev+ops@example.org":     true, // a list whose own name has the delimiter
		"all-request@example.org": true,
	}
	known := func(a string) bool { return lists[a] }
	r := Recipients{Delimiter: "+", LocalDomains: []string{"example.org", "example.com"}}
	tests := []struct {
		name string
		r    Recipients
		in   string
		want string
	}{
		{"plain", r, "everyone@example.org", "everyone@example.org"},
		{"extension", r, "everyone+x@example.org", "everyone@example.org"},
		{"extension on no list", r, "bob+news@example.org", "bob@example.org"},
		{"empty extension", r, "everyone+@example.org", "everyone@example.org"},
		{"two delimiters", r, "everyone+a+b@example.org", "everyone@example.org"},
		{"the whole address first", r, "dev+ops@example.org", "dev+ops@example.org"},
		{"delimiter first is no extension", r, "+everyone@example.org", "+everyone@example.org"},
		{"quoted", r, `"everyone"@example.org`, "everyone@example.org"},
		{"quoted with extension", r, `"everyone+x"@example.org`, "everyone@example.org"},
		{"trailing dot", r, "everyone@example.org.", "everyone@example.org"},
		{"source route", r, "@hop.example.net:everyone@example.org", "everyone@example.org"},
		{"bare", r, "everyone", "everyone@example.org"},
		{"bare with extension", r, "everyone+x", "everyone@example.org"},
		{"bare in the second domain", r, "sales", "sales@example.com"},
		{"bare no list", r, "bob", "bob@example.org"},
		{"bare without local domains", Recipients{Delimiter: "+"}, "everyone", "everyone"},
		{"no delimiter", Recipients{}, "everyone+x@example.org", "everyone+x@example.org"},
		{"several delimiters", Recipients{Delimiter: "+-"}, "everyone-x@example.org", "everyone@example.org"},
		{"owner- kept with '-'", Recipients{Delimiter: "-"}, "owner-x@example.org", "owner-x@example.org"},
		{"-request kept with '-'", Recipients{Delimiter: "-"}, "all-request@example.org", "all-request@example.org"},
		{"upper case", r, "<EVERYONE+X@EXAMPLE.ORG.>", "everyone@example.org"},
		{"empty", r, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Resolve(tt.in, known); got != tt.want {
				t.Errorf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestPlanSeesListForms: every form of a list's address an MTA resolves
// to the list counts as the list, reaches its policy and its posters'
// gate, in the plan.
func TestPlanSeesListForms(t *testing.T) {
	s := &Site{Config: Defaults(), Lists: map[string]int{"everyone@example.org": 3000, "announce@example.org": 3000},
		Recipients: Recipients{Delimiter: "+", LocalDomains: []string{"example.org"}}}
	s.SetList("everyone@example.org", ListPolicy{Limits: map[Rule]int64{RuleMaxReplies: 5}})
	s.SetList("announce@example.org", ListPolicy{Posters: []string{"comms@example.org"}})
	reply := Headers{MessageID: "<r@example.org>", InReplyTo: "<o@example.org>", Subject: "RE: x"}
	for _, list := range []string{"everyone", "announce"} {
		for _, form := range []string{list + "+x@example.org", `"` + list + `"@example.org`, list + "@example.org.",
			list, "@hop.example.net:" + list + "@example.org", "<" + strings.ToUpper(list) + "@EXAMPLE.ORG>"} {
			env := Envelope{Sender: "stranger@example.net", Rcpts: []string{form}}
			p := s.Plan(env, &reply)
			if p.Facts.Audience != 3000 {
				t.Errorf("<%s>: audience %d, want 3000", form, p.Facts.Audience)
			}
			switch list {
			case "everyone":
				if !p.Store || p.Config.Limits.MaxReplies != 5 || len(p.Lists) != 1 || p.Lists[0] != "everyone@example.org" {
					t.Errorf("<%s>: store %v, max_replies %d, lists %q; want the list's 5 and [everyone@example.org]",
						form, p.Store, p.Config.Limits.MaxReplies, p.Lists)
				}
			case "announce":
				if p.Verdict.Rule != RuleGate || p.List != "announce@example.org" {
					t.Errorf("<%s>: %+v list %q; want the gate of announce@example.org", form, p.Verdict, p.List)
				}
			}
			if env.Rcpts[0] != form {
				t.Errorf("Plan changed the envelope: %q", env.Rcpts[0])
			}
		}
	}
}

// TestPlanSeesHeaderListForms: with split_envelopes the header's forms of
// a list count as the list too: an envelope of two members, a To of the
// list quoted, with an extension or with a trailing dot.
func TestPlanSeesHeaderListForms(t *testing.T) {
	s := &Site{Config: Defaults(), Lists: map[string]int{"everyone@example.org": 3000},
		Recipients: Recipients{Delimiter: "+", LocalDomains: []string{"example.org"}}}
	s.Config.SplitEnvelopes = true
	for _, to := range []string{`All <"everyone"@example.org>`, "everyone+x@example.org", "<everyone@example.org.>"} {
		h := Headers{MessageID: "<r@example.org>", InReplyTo: "<o@example.org>", Subject: "RE: x", To: []string{to}}
		p := s.Plan(Envelope{Sender: "a@example.org", Rcpts: []string{"m1@example.org", "m2@example.org"}}, &h)
		if p.Facts.Audience != 3000 {
			t.Errorf("To: %s: audience %d, want 3000", to, p.Facts.Audience)
		}
	}
}

func TestResolveAllocatesNothingForPlainAddresses(t *testing.T) {
	s := &Site{Lists: map[string]int{"everyone@example.org": 3000}, Recipients: Recipients{Delimiter: "+"}}
	rcpts := []string{"everyone@example.org", "bob@example.org", "ann@example.net"}
	if n := testing.AllocsPerRun(100, func() { _ = s.resolveAll(rcpts) }); n != 0 {
		t.Errorf("resolveAll of plain addresses: %v allocations, want 0", n)
	}
}

// FuzzCanonicalAddress: CanonicalAddress is idempotent and never leaves
// brackets, a route, quotes or a trailing dot in a plain address; every
// attack form built from a list's clean address resolves to the list.
func FuzzCanonicalAddress(f *testing.F) {
	for _, s := range []string{"everyone@example.org", `"everyone"@example.org`, "@hop:everyone@example.org.",
		"everyone+x", "<a@b>", `"a\"@b"@c.`, "@[::1]:x@y", "+", "@", `"`, `\`, "..@.."} {
		f.Add(s, "everyone", "x", uint8(0))
	}
	f.Fuzz(func(t *testing.T, a, local, ext string, form uint8) {
		c := CanonicalAddress(a)
		if again := CanonicalAddress(c); again != c {
			t.Fatalf("CanonicalAddress(%q) = %q, but again %q", a, c, again)
		}
		if c != strings.ToLower(c) && utf8.ValidString(c) {
			t.Fatalf("CanonicalAddress(%q) = %q: not lower case", a, c)
		}
		r := Recipients{Delimiter: "+", LocalDomains: []string{"example.org"}}
		_ = r.Resolve(a, func(string) bool { return false })

		// A list with a clean local part: each form of it is the list.
		if local == "" || strings.ContainsFunc(local, needsQuotes) || strings.ContainsAny(local, "+.") || local != strings.ToLower(local) || !utf8.ValidString(local) {
			return
		}
		if strings.ContainsAny(ext, "\"\\@<>()[],;: \t\r\n") || !utf8.ValidString(ext) {
			return
		}
		list := local + "@example.org"
		known := func(s string) bool { return s == list }
		forms := []string{
			local + "+" + ext + "@example.org",
			`"` + local + `"@example.org`,
			list + ".",
			local,
			local + "+" + ext,
			"@hop.example.net:" + list,
			"<@a.example.net,@b.example.net:" + strings.ToUpper(local) + "@EXAMPLE.ORG.>",
		}
		if strings.ToLower(strings.ToUpper(local)) != local { // ϱ: its upper case is Ρ, whose lower case is ρ
			forms = forms[:len(forms)-1]
		}
		in := forms[int(form)%len(forms)]
		if got := r.Resolve(in, known); got != list {
			t.Fatalf("Resolve(%q) = %q, want %q", in, got, list)
		}
	})
}
