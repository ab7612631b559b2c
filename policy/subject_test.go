package policy

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestNormalizeSubject(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		base  string
		reply bool
	}{
		{"plain", "Hello", "hello", false},
		{"english", "Re: Hello", "hello", true},
		{"outlook upper", "RE: Hello", "hello", true},
		{"leading space and folding", " RE:\r\n Hello\r\n  World", "hello world", true},
		{"stacked", "Re: RE: re:Hello", "hello", true},
		{"forward only", "Fwd: Hello", "hello", false},
		{"FW", "FW: Hello", "hello", false},
		{"forward then reply", "Re: Fwd: Hello", "hello", true},
		{"counter in brackets", "Re[2]: Hello", "hello", true},
		{"counter in parentheses", "Re(2): Hello", "hello", true},
		{"counter with caret", "Re^3: Hello", "hello", true},
		{"french space before colon", "RE : Hello", "hello", true},
		{"french forward", "TR : Hello", "hello", false},
		{"full-width colon", "回复：Hello", "hello", true},
		{"full-width letters", "ＲＥ：Hello", "hello", true},
		{"tags in the chain", "[EXT] RE: [all-staff] AW: Hello", "hello", true},
		{"gateway word", "EXTERNAL: RE: Hello", "hello", true},
		{"tag only stays", "[all-staff]", "[all-staff]", false},
		{"reply to a tag only", "Re: [all-staff]", "[all-staff]", true},
		{"fwd trailer", "Hello (fwd)", "hello", false},
		{"fwd trailer after reply", "Re: Hello (fwd) (fwd)", "hello", true},
		{"RFC 5256 forward wrapper", "[Fwd: Hello]", "hello", false},
		{"whitespace collapsed", "Re:   Hello \t  world  ", "hello world", true},
		{"nbsp and ideographic space", "Re:\u00a0Hello\u3000world", "hello world", true},
		{"zero-width and direction marks", "\u200fRe:\u200b Hel\u200dlo", "hello", true},
		{"case folding: sharp s", "RE: STRASSE", "strasse", true},
		{"case folding: ß", "Re: Straße", "strasse", true},
		{"case folding: final sigma", "ΑΠ: ΛΟΓΟΣ", "λογοσ", true},
		{"final sigma typed", "Απ: λογος", "λογοσ", true},
		{"R needs a colon", "Richard: the plan", "richard: the plan", false},
		{"I needs a colon", "Ideas for 2025", "ideas for 2025", false},
		{"single letter R", "R: Hello", "hello", true},
		{"single letter I", "I: Hello", "hello", false},
		{"word starting with Re", "Report: Q3", "report: q3", false},
		{"Re without colon", "Re Hello", "re hello", false},
		{"only a prefix", "Re:", "", true},
		{"empty", "", "", false},
		{"encoded utf-8 B", "=?UTF-8?B?UmU6IEhlbGxv?=", "hello", true},
		{"encoded iso-8859-1 Q", "=?ISO-8859-1?Q?AW:_Gr=FC=DFe?=", "grüsse", true},
		{"encoded words joined", "=?utf-8?q?Re:_Hel?= =?utf-8?q?lo?=", "hello", true},
		{"encoded koi8-r", "=?koi8-r?B?79TXxdQ6IPDSydfF1A==?=", "привет", true},
		{"encoded windows-1251", "=?windows-1251?B?zvLiOiDS5fHy?=", "тест", true},
		{"encoded gb2312", "=?gb2312?B?u9i4tDogSGVsbG8=?=", "hello", true},
		{"encoded big5", "=?big5?B?pl7C0DogSGVsbG8=?=", "hello", true},
		{"unknown charset kept", "=?x-unknown?Q?Re:_Hello?=", "hello", true},
		{"broken base64 kept as text", "=?utf-8?B?***?= Hello", "=?utf-8?b?***?= hello", false},
		{"raw latin-1", "Re: Caf\xe9", "café", true},
		{"raw utf-8", "Re: Café", "café", true},
		{"control characters", "Re: Hel\x00lo\x07", "hello", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, reply := NormalizeSubject(tt.in)
			if base != tt.base || reply != tt.reply {
				t.Errorf("NormalizeSubject(%q) = %q, %v; want %q, %v", tt.in, base, reply, tt.base, tt.reply)
			}
		})
	}
}

// TestSubjectLanguages checks that the reply and forward prefixes of many
// languages' mail clients, plain or RFC 2047 encoded, all give one base
// subject and one subject key.
func TestSubjectLanguages(t *testing.T) {
	lists := []string{"all-staff@example.org"}
	want := SubjectKey("quarterly results", lists)
	tests := []struct {
		lang    string
		subject string
		reply   bool
	}{
		{"original", "Quarterly results", false},
		{"English", "Re: Quarterly results", true},
		{"English forward", "Fwd: Quarterly results", false},
		{"German", "AW: Quarterly results", true},
		{"German forward", "WG: Quarterly results", false},
		{"Swedish/Norwegian/Danish", "SV: Quarterly results", true},
		{"Finnish", "VS: Quarterly results", true},
		{"Finnish forward", "VL: Quarterly results", false},
		{"Dutch", "Antw: Quarterly results", true},
		{"Dutch forward", "Doorst: Quarterly results", false},
		{"Italian", "R: Quarterly results", true},
		{"Italian old", "RIF: Quarterly results", true},
		{"Italian forward", "I: Quarterly results", false},
		{"French", "RE : Quarterly results", true},
		{"French forward", "TR: Quarterly results", false},
		{"Spanish", "RE: Quarterly results", true},
		{"Spanish forward", "RV: Quarterly results", false},
		{"Portuguese", "RES: Quarterly results", true},
		{"Portuguese forward", "ENC: Quarterly results", false},
		{"Polish", "Odp: Quarterly results", true},
		{"Polish forward", "PD: Quarterly results", false},
		{"Turkish", "YNT: Quarterly results", true},
		{"Turkish forward", "İLT: Quarterly results", false},
		{"Chinese simplified", "回复: Quarterly results", true},
		{"Chinese Outlook", "答复: Quarterly results", true},
		{"Chinese traditional", "回覆：Quarterly results", true},
		{"Chinese forward", "转发: Quarterly results", false},
		{"Russian", "Ответ: Quarterly results", true},
		{"Russian short", "Отв: Quarterly results", true},
		{"Russian forward", "Пересл: Quarterly results", false},
		{"Greek", "ΑΠ: Quarterly results", true},
		{"Greek old", "ΣΧΕΤ: Quarterly results", true},
		{"Greek forward", "ΠΡΘ: Quarterly results", false},
		{"Hebrew", "תגובה: Quarterly results", true},
		{"Arabic", "رد: Quarterly results", true},
		{"Japanese", "返信: Quarterly results", true},
		{"Korean", "회신: Quarterly results", true},
		{"stacked mix", "[EXT] RE: [all-staff] AW: Antw: SV: Quarterly results", true},
		{"encoded UTF-8 B (Russian)", "=?UTF-8?B?0J7RgtCy0LXRgjogUXVhcnRlcmx5IHJlc3VsdHM=?=", true},
		{"encoded UTF-8 B (Chinese)", "=?UTF-8?B?5Zue5aSN77yaUXVhcnRlcmx5IHJlc3VsdHM=?=", true},
		{"encoded ISO-8859-1 Q (German)", "=?ISO-8859-1?Q?AW:_Quarterly_results?=", true},
		{"encoded ISO-8859-7 (Greek)", "=?ISO-8859-7?B?wdA6IFF1YXJ0ZXJseSByZXN1bHRz?=", true},
		{"encoded windows-1255 (Hebrew)", "=?windows-1255?B?+uLl4eQ6IFF1YXJ0ZXJseSByZXN1bHRz?=", true},
		{"mixed case and spacing", "re:quarterly   RESULTS", true},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			base, reply := NormalizeSubject(tt.subject)
			if base != "quarterly results" || reply != tt.reply {
				t.Fatalf("NormalizeSubject(%q) = %q, %v; want %q, %v", tt.subject, base, reply, "quarterly results", tt.reply)
			}
			if k := SubjectKey(base, lists); k != want {
				t.Errorf("subject key %s, want %s", k, want)
			}
		})
	}
}

func TestSubjectCaps(t *testing.T) {
	long := strings.Repeat("Ж", 3*maxBaseRunes)
	base, _ := NormalizeSubject("Re: " + long)
	if n := utf8.RuneCountInString(base); n != maxBaseRunes {
		t.Errorf("base has %d runes, want %d", n, maxBaseRunes)
	}
	orig, _ := NormalizeSubject(long)
	if orig != base {
		t.Error("a long original and its reply differ after the cut")
	}
	stacked := strings.Repeat("Re: ", 5000) + "Hello" // 20 KB, under the 32 KiB cut
	if base, reply := NormalizeSubject(stacked); base == "" || !reply {
		t.Errorf("huge prefix stack: %q, %v", base, reply)
	}
}

// TestCanonicalASCII: for ASCII, canonical lower-cases instead of folding
// and normalising; that must be all that folding and NFKC would do.
func TestCanonicalASCII(t *testing.T) {
	var all strings.Builder
	for c := range utf8.RuneSelf {
		all.WriteByte(byte(c))
		if s := string(rune(c)); strings.ToLower(s) != foldNFKC(s) {
			t.Errorf("%q: ToLower %q, full folding %q", s, strings.ToLower(s), foldNFKC(s))
		}
	}
	if s := all.String(); strings.ToLower(s) != foldNFKC(s) {
		t.Errorf("ToLower and full folding differ on all of ASCII")
	}
}

func FuzzNormalizeSubject(f *testing.F) {
	for _, s := range []string{
		"[EXT] RE: [all-staff] AW: Hello", "Re[2]: Hello", "回复：Hello", "=?UTF-8?B?UmU6IEhlbGxv?=",
		"=?ISO-8859-1?Q?AW:_Gr=FC=DFe?=", "=?utf-8?B?0J7RgtCy0LXRgjo=?= =?iso-8859-1?q?Caf=E9?=", "=?x?q??=",
		"Caf\xe9 \xff\xfe", "[Fwd: [x]]", "Re: (fwd) (fwd)", "Re:\u0301\u0345ΣΣ", "ﬁ ǅ ẞ İ", "[", "]", "Re(",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if isASCII(v) && strings.ToLower(v) != foldNFKC(v) {
			t.Fatalf("canonical's ASCII shortcut: %q, full folding %q", strings.ToLower(v), foldNFKC(v))
		}
		base, _ := NormalizeSubject(v)
		if !utf8.ValidString(base) || utf8.RuneCountInString(base) > maxBaseRunes {
			t.Fatalf("bad base %q", base)
		}
		if base != strings.TrimSpace(base) || strings.Contains(base, "  ") {
			t.Fatalf("base %q: space not collapsed", base)
		}
		for _, r := range base {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || (unicode.IsSpace(r) && r != ' ') {
				t.Fatalf("base %q holds %U", base, r)
			}
		}
		if strings.Contains(base, "=?") {
			return // looks like an encoded word: a second pass decodes it
		}
		if again, _ := NormalizeSubject(base); again != base {
			t.Fatalf("not idempotent: %q -> %q -> %q", v, base, again)
		}
		// Stripping a reply prefix off the base gives the base back.
		if again, reply := NormalizeSubject("Re: " + base); (again != base && base != "") || !reply {
			t.Fatalf("Re: %q -> %q, %v", base, again, reply)
		}
	})
}

func ExampleNormalizeSubject() {
	for _, s := range []string{
		"Quarterly results",
		"[EXT] RE: [all-staff] AW: Quarterly results",
		"=?UTF-8?B?5Zue5aSN77yaUXVhcnRlcmx5IHJlc3VsdHM=?=", // 回复：Quarterly results
		"WG: Quarterly results (fwd)",
		"Richard: the plan",
	} {
		base, reply := NormalizeSubject(s)
		fmt.Printf("%q %v\n", base, reply)
	}
	// Output:
	// "quarterly results" false
	// "quarterly results" true
	// "quarterly results" true
	// "quarterly results" false
	// "richard: the plan" false
}

func TestDisplaySubject(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" Quarterly results", "Quarterly results"},
		{" RE: Quarterly\r\n  results", "RE: Quarterly results"},
		{" =?UTF-8?B?5Zue5aSN77yaUXVhcnRlcmx5IHJlc3VsdHM=?=", "回复：Quarterly results"},
		{" =?ISO-8859-1?Q?R=E9union_d=27=E9quipe?=", "Réunion d'équipe"},
		{"bell\x07 and\u200b zero width", "bell and zero width"},
		{strings.Repeat("x", 1000), strings.Repeat("x", maxReportRunes)},
	} {
		if got := DisplaySubject(tc.in); got != tc.want {
			t.Errorf("DisplaySubject(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
