package policy

import (
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseMessageID(t *testing.T) {
	long := strings.Repeat("x", maxMessageIDBytes-len("@example.org")) + "@example.org"
	tests := []struct {
		name string
		in   string
		want string
		ok   bool
	}{
		{"plain", "<abc@example.org>", "abc@example.org", true},
		{"leading space (OptHeaderLeadingSpace)", " <abc@example.org>", "abc@example.org", true},
		{"folded CRLF", "\r\n <abc@example.org>\r\n", "abc@example.org", true},
		{"folded LF tab inside", "<abc\n\t@example.org>", "abc@example.org", true},
		{"domain lower-cased, left part kept", "<CAF=Xy+Ab@Mail.Gmail.COM>", "CAF=Xy+Ab@mail.gmail.com", true},
		{"outlook", " <DB9PR01MB7353D2C0E4F5A6B7C8D9E0F1A2B3C@DB9PR01MB7353.eurprd01.prod.exchangelabs.com>", "DB9PR01MB7353D2C0E4F5A6B7C8D9E0F1A2B3C@db9pr01mb7353.eurprd01.prod.exchangelabs.com", true},
		{"comment before", "(sent by foo) <abc@example.org>", "abc@example.org", true},
		{"first of several", "<a@x> <b@y>", "a@x", true},
		{"bare token with @", "abc@example.org", "abc@example.org", true},
		{"bare word is not an id", "hello", "", false},
		{"empty", "", "", false},
		{"only space", " \r\n\t ", "", false},
		{"empty brackets", "<>", "", false},
		{"empty brackets then id", "<> <a@x>", "a@x", true},
		{"unclosed bracket", "<abc@example.org", "abc@example.org", true},
		{"bracket restarts", "<junk <abc@example.org>", "abc@example.org", true},
		{"stray closing bracket", "> abc@example.org", "abc@example.org", true},
		{"no @ is no id", "<1234.5678>", "", false},
		{"git-send-email's <yes> is no id", "<yes>", "", false},
		{"no local part", "<@example.org>", "", false},
		{"no domain", "<abc@>", "", false},
		{"no @ first, then an id", "<yes> <a@x>", "a@x", true},
		{"control characters dropped", "<a\x00b\x7f@x>", "ab@x", true},
		{"invalid UTF-8 dropped", "<a\xffb@x>", "ab@x", true},
		{"500 bytes is an id", "<" + long + ">", long, true},
		{"501 bytes is none", "<x" + long + ">", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseMessageID(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseMessageID(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseIDList(t *testing.T) {
	many := strings.Repeat("<id@x> ", 1) + func() string {
		var b strings.Builder
		for i := range 300 {
			b.WriteString("<" + strings.Repeat("n", i%7+1) + string(rune('a'+i%26)) + itoa(i) + "@x>\r\n ")
		}
		return b.String()
	}()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"thunderbird references", " <root@example.org>\r\n <mid@example.org>\r\n <parent@example.org>", []string{"root@example.org", "mid@example.org", "parent@example.org"}},
		{"no spaces", "<a@x><b@x>", []string{"a@x", "b@x"}},
		{"commas", "<a@x>, <b@x>", []string{"a@x", "b@x"}},
		{"duplicates dropped", "<a@x> <b@x> <a@X>", []string{"a@x", "b@x"}},
		{"obsolete in-reply-to phrase", `Your message of "Tue, 5 Mar 2019" <a@x>`, []string{"a@x"}},
		{"quoted phrase with brackets", `"<not@id>" <a@x>`, []string{"a@x"}},
		{"comment", "<a@x> (resent) <b@x>", []string{"a@x", "b@x"}},
		{"bare ids", "a@x b@y", []string{"a@x", "b@y"}},
		{"ids without @ dropped", "<yes> <1234> <a@x> <@x> <b@>", []string{"a@x"}},
		{"over-long id dropped", "<a@x> <" + strings.Repeat("y", 600) + "@x> <b@x>", []string{"a@x", "b@x"}},
		{"empty", "", nil},
		{"garbage", "<<<>>>(((", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseIDList(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("ParseIDList(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	t.Run("both ends of a long list", func(t *testing.T) {
		got := ParseIDList(many)
		all := strings.Fields(strings.NewReplacer("<", "", ">", "", "\r\n", "").Replace(many))
		want := append(slices.Clone(all[:idListEnds]), all[len(all)-idListEnds:]...)
		if !slices.Equal(got, want) {
			t.Errorf("got %q,\nwant the first and last %d: %q", got, idListEnds, want)
		}
	})
	t.Run("a repeat of a kept id is dropped at either end", func(t *testing.T) {
		var b strings.Builder
		for i := range 30 {
			b.WriteString("<" + itoa(i) + "@x> ")
		}
		b.WriteString("<0@x> <29@x> <30@x>")
		got := ParseIDList(b.String())
		if len(got) != maxIDs || got[0] != "0@x" || got[len(got)-1] != "30@x" || got[len(got)-2] != "29@x" {
			t.Errorf("got %q", got)
		}
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"bare", []string{"a@example.org"}, []string{"a@example.org"}},
		{"display names", []string{` "Smith, John" <John.Smith@Example.org>, Jane <jane@example.org>`}, []string{"john.smith@example.org", "jane@example.org"}},
		{"at sign in display name", []string{`"boss@corp" <real@example.org>`}, []string{"real@example.org"}},
		{"encoded display name", []string{"=?UTF-8?Q?M=C3=BCller=2C_J=C3=B6rg?= <mueller@example.de>"}, []string{"mueller@example.de"}},
		{"encoded word with a comma", []string{"=?utf-8?q?Smith,_John?= <js@example.org>"}, []string{"js@example.org"}},
		{"comments", []string{"a@example.org (Alice), (team) b@example.org"}, []string{"a@example.org", "b@example.org"}},
		{"group", []string{"Everyone: a@example.org, B <b@example.org>;, c@example.org"}, []string{"a@example.org", "b@example.org", "c@example.org"}},
		{"empty group", []string{"undisclosed-recipients:;"}, nil},
		{"route", []string{"<@relay.example:user@example.org>"}, []string{"user@example.org"}},
		{"missing commas", []string{"a@x.org b@x.org <c@x.org>"}, []string{"c@x.org"}},
		{"missing commas bare", []string{"a@x.org b@x.org"}, []string{"a@x.org", "b@x.org"}},
		{"folded", []string{" All Staff\r\n <All-Staff@Example.org>,\r\n\tbob@example.org"}, []string{"all-staff@example.org", "bob@example.org"}},
		{"several values and duplicates", []string{"a@x.org, A@X.org", "B <a@x.org>, b@x.org"}, []string{"a@x.org", "b@x.org"}},
		{"unbalanced angle", []string{"John <john@x.org, k@x.org"}, []string{"john@x.org", "k@x.org"}},
		{"unbalanced quote", []string{`"John <john@x.org>`}, []string{"john@x.org"}},
		{"semicolons (Outlook)", []string{"a@x.org; b@x.org"}, []string{"a@x.org", "b@x.org"}},
		{"local part only is no address", []string{"postmaster, <root>"}, nil},
		{"garbage", []string{"\x00\xff<<>>@@,,;;::", "@", "a@", "@b"}, nil},
		{"mailto", []string{"<mailto:a@x.org>"}, []string{"a@x.org"}},
		{"quoted local part", []string{`Everyone <"Everyone"@example.org>, <"every one"@example.org>`}, []string{"everyone@example.org"}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseAddressList(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("ParseAddressList(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	t.Run("capped", func(t *testing.T) {
		var b strings.Builder
		for i := range maxAddresses + 50 {
			b.WriteString("u" + itoa(i) + "@x.org,")
		}
		if got := ParseAddressList([]string{b.String()}); len(got) != maxAddresses {
			t.Errorf("got %d addresses, want %d", len(got), maxAddresses)
		}
	})
}

func FuzzParseMessageID(f *testing.F) {
	for _, s := range []string{
		"<abc@example.org>", " <CAF=Xy+Ab@Mail.Gmail.COM>", "<a<b>", "<<<<", ">>>", "(((<a@x>", `"<a@x>`,
		"abc@x", "<a\r\n @x>", "\xff\xfe<\x00@\x00>", "<" + strings.Repeat("A", 3000) + "@X>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := ParseMessageID(v)
		if !ok {
			if id != "" {
				t.Fatalf("not ok but id %q", id)
			}
			return
		}
		checkID(t, id)
		if again, ok := ParseMessageID("<" + id + ">"); !ok || again != id {
			t.Fatalf("not idempotent: %q -> %q -> %q", v, id, again)
		}
		if MessageIDKey(id) != MessageIDKey(ParseIDList(v)[0]) {
			t.Fatalf("ParseMessageID and ParseIDList disagree on %q", v)
		}
	})
}

func FuzzParseIDList(f *testing.F) {
	for _, s := range []string{
		" <root@example.org>\r\n <mid@example.org>", "<a@x><b@x>", `Your message of "x" <a@x>`, "a@x b@y",
		"<a@x", "(<a@x>) <b@x>", "<" + strings.Repeat("<x@y>", 500),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ids := ParseIDList(v)
		if len(ids) > maxIDs {
			t.Fatalf("%d ids", len(ids))
		}
		seen := map[string]bool{}
		for _, id := range ids {
			checkID(t, id)
			if seen[id] {
				t.Fatalf("duplicate %q", id)
			}
			seen[id] = true
			if again, _ := ParseMessageID("<" + id + ">"); again != id {
				t.Fatalf("not idempotent: %q -> %q", id, again)
			}
		}
	})
}

func checkID(t *testing.T, id string) {
	t.Helper()
	if id == "" || len(id) > maxMessageIDBytes || !utf8.ValidString(id) {
		t.Fatalf("bad id %q (%d bytes)", id, len(id))
	}
	if strings.ContainsAny(id, "<> \t\r\n\x00") {
		t.Fatalf("id %q holds a bracket, space or control", id)
	}
}

func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{
		`"Smith, John" <John.Smith@Example.org>, Jane <jane@example.org>`, "Everyone: a@x, b@y;", "<@r:u@x>",
		"=?UTF-8?Q?M=C3=BCller?= <m@x>", `"unclosed <a@x>`, "((a@x)", "a@x b@y <c@z", "\xff@\xfe",
	} {
		f.Add(s, "b@y")
	}
	f.Fuzz(func(t *testing.T, to, cc string) {
		got := ParseAddressList([]string{to, cc})
		if len(got) > maxAddresses {
			t.Fatalf("%d addresses", len(got))
		}
		seen := map[string]bool{}
		for _, a := range got {
			if seen[a] {
				t.Fatalf("duplicate %q", a)
			}
			seen[a] = true
			at := strings.LastIndexByte(a, '@')
			if at <= 0 || at == len(a)-1 || !utf8.ValidString(a) || a != strings.ToLower(a) {
				t.Fatalf("bad address %q", a)
			}
			if strings.ContainsAny(a, "<>,; \t\r\n\"()") {
				t.Fatalf("address %q holds a separator", a)
			}
			if again := ParseAddressList([]string{a}); len(again) != 1 || again[0] != a {
				t.Fatalf("not idempotent: %q -> %q", a, again)
			}
		}
	})
}

// TestHostileInputsAreLinear guards against quadratic scans: each of these
// 256 KiB values took seconds to parse before comments and quotes that
// never close were remembered. It compares each parser's time on an input
// with its time on a sixteenth of it (best of five runs each, in turn), so
// a slow or loaded machine does not matter: linear work grows about 16
// times, quadratic work 256 times; the bound is 64.
func TestHostileInputsAreLinear(t *testing.T) {
	n := maxHeaderBytes
	inputs := []struct {
		name string
		v    func(n int) string
	}{
		{"unclosed comments", func(n int) string { return strings.Repeat("(", n) }},
		{"escaped quotes", func(n int) string { return strings.Repeat("\"\\", n/2) }},
		{"unclosed quotes", func(n int) string { return strings.Repeat("\"", n) }},
		{"open brackets", func(n int) string { return strings.Repeat("<", n) }},
		{"open bracket then words", func(n int) string { return "<" + strings.Repeat("a ", n/2) }},
		{"bare ids", func(n int) string { return strings.Repeat("a@b ", n/4) }},
		{"encoded words", func(n int) string { return strings.Repeat("=?utf-8?q?a?=", n/13) }},
		{"prefixes", func(n int) string { return strings.Repeat("re:", n/3) }},
		{"tags", func(n int) string { return strings.Repeat("[", n) }},
		{"combining marks", func(n int) string { return "a" + strings.Repeat("\u0301", n/2) }},
	}
	parsers := []struct {
		name string
		f    func(string)
	}{
		{"ParseMessageID", func(v string) { ParseMessageID(v) }},
		{"ParseIDList", func(v string) { ParseIDList(v) }},
		{"ParseAddressList", func(v string) { ParseAddressList([]string{v}) }},
		{"NormalizeSubject", func(v string) { NormalizeSubject(v) }},
		{"ThreadIndexGUID", func(v string) { ThreadIndexGUID(v) }},
		{"IsAutoReply", func(v string) {
			IsAutoReply(Parse(Headers{Subject: v, ContentType: v, AutoSubmitted: "auto-generated", InReplyTo: v, References: v}))
		}},
	}
	// best returns the fastest of a few runs of f on v, each after a
	// collection and with the collector off: a collection that lands in
	// one run and not the other would otherwise decide the ratio.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// The small and the large input are timed in turn, five times each,
	// and each keeps its best: a busy spell of the machine then hits both
	// or neither.
	best := func(f func(string), small, large string) (ts, tl time.Duration) {
		ts, tl = time.Duration(1<<63-1), time.Duration(1<<63-1)
		for range 5 {
			for _, x := range []struct {
				v string
				d *time.Duration
			}{{small, &ts}, {large, &tl}} {
				runtime.GC()
				start := time.Now()
				f(x.v)
				*x.d = min(*x.d, time.Since(start))
			}
		}
		return ts, tl
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			// 16 times the input: linear work takes 16 times as long,
			// quadratic 256 times; the bound, 64, leaves a factor of 4
			// to a loaded machine on either side.
			small, large := in.v(n/16), in.v(n)
			for _, p := range parsers {
				ts, tl := best(p.f, small, large)
				// Below 20 ms a parse of 256 KiB is no threat (the attacks
				// this guards against took seconds), and the scheduler of
				// a loaded machine can add that much to any run.
				if tl < 20*time.Millisecond {
					continue
				}
				if ratio := float64(tl) / float64(max(ts, time.Microsecond)); ratio > 64 {
					t.Errorf("%s: %v on %d bytes, %v on %d bytes: %.1f times for 16 times the input (quadratic?)", p.name, ts, len(small), tl, len(large), ratio)
				}
			}
		})
	}
}
