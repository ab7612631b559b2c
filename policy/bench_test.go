package policy

import (
	"fmt"
	"testing"
)

// Benchmarks of the pure per-message work: thread identity, subjects and
// audience. go test -run '^$' -bench . -benchmem ./policy/

var benchLists = map[string]int{"all-staff@example.org": 850000, "students@example.org": 30000}

// benchHeaders are the messages BenchmarkIdentify and BenchmarkParse run on.
var benchHeaders = map[string]Headers{
	"new": {
		MessageID: "<CAB1234567890.abcdef@mail.example.org>",
		Subject:   "Quarterly figures",
		To:        []string{"Ann <ann@example.org>, bob@example.org"},
	},
	"reply-references": {
		MessageID:  "<reply-17@example.org>",
		InReplyTo:  "<reply-16@example.org>",
		References: "<root-1@example.org> <reply-9@example.org> <reply-16@example.org>",
		Subject:    "RE: Test message, please ignore",
		To:         []string{"all-staff@example.org, boss@example.org"},
	},
	"reply-thread-index": {
		MessageID:   "<reply-18@example.org>",
		ThreadIndex: "AQHZ1234567890abcdefghijklmnopqrstuvAAAAAA==",
		Subject:     "AW: Test message, please ignore",
		To:          []string{"all-staff@example.org"},
	},
	"reply-subject-only": {
		MessageID: "<reply-19@example.org>",
		Subject:   "=?UTF-8?B?UmU6IFRlc3QgbWVzc2FnZSwgcGxlYXNlIGlnbm9yZQ==?=",
		To:        []string{"all-staff@example.org"},
	},
}

// BenchmarkIdentify is the work from raw headers to an identity: Parse
// (which also reads To, Cc and the auto-reply headers) and Identify.
func BenchmarkIdentify(b *testing.B) {
	for name, h := range benchHeaders {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Identify(Parse(h), []string{"all-staff@example.org"})
			}
		})
	}
}

// BenchmarkIdentifyParsed is Identify alone, on a message parsed before.
func BenchmarkIdentifyParsed(b *testing.B) {
	for name, h := range benchHeaders {
		m := Parse(h)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Identify(m, []string{"all-staff@example.org"})
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for name, h := range benchHeaders {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Parse(h)
			}
		})
	}
}

func BenchmarkNormalizeSubject(b *testing.B) {
	for name, s := range map[string]string{
		"plain":     "Quarterly figures for the board",
		"prefixes":  "RE: AW: Fwd: [all-staff] Test message, please ignore",
		"encoded":   "=?UTF-8?B?UmU6IFRlc3QgbWVzc2FnZSwgcGxlYXNlIGlnbm9yZQ==?=",
		"localized": "Ответ: 回复: SV: Test message",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = NormalizeSubject(s)
			}
		})
	}
}

func BenchmarkAudience(b *testing.B) {
	for _, n := range []int{1, 3, 100} {
		env := make([]string, n)
		for i := range env {
			env[i] = fmt.Sprintf("person%d@example.org", i)
		}
		b.Run(fmt.Sprintf("small-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Audience(env, env, benchLists)
			}
		})
	}
	b.Run("list", func(b *testing.B) {
		env := []string{"all-staff@example.org", "boss@example.org"}
		hdr := ParseAddressList([]string{"All staff <all-staff@example.org>, Boss <boss@example.org>"})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Audience(env, hdr, benchLists)
		}
	})
}

func BenchmarkParseAddressList(b *testing.B) {
	v := []string{`"Ann Example" <ann@example.org>, bob@example.org, "Smith, Carol" <carol@example.org>`}
	b.ReportAllocs()
	for b.Loop() {
		_ = ParseAddressList(v)
	}
}

// BenchmarkDecide is the pure per-message decision, both steps (Site.Plan
// and Plan.Decide) without the store: a small message, decided by the
// plan, and a reply-all to a large list with a policy of its own.
func BenchmarkDecide(b *testing.B) {
	s := &Site{Config: Defaults(), Mode: ModeEnforce, Lists: benchLists, Exempt: Senders{}, Posters: Senders{}}
	s.SetList("students@example.org", ListPolicy{Limits: map[Rule]int64{RuleMaxReplies: 5}, Posters: []string{"@example.org"}})
	for _, bc := range []struct {
		name string
		env  Envelope
		h    Headers
	}{
		{"small", Envelope{Sender: "ann@example.org", Rcpts: []string{"bob@example.org", "carol@example.org"}}, benchHeaders["new"]},
		{"large-reply", Envelope{Sender: "ann@example.org", Rcpts: []string{"all-staff@example.org", "boss@example.org"}}, benchHeaders["reply-references"]},
		{"large-reply/list-policy", Envelope{Sender: "ann@example.org", Rcpts: []string{"students@example.org"}}, benchHeaders["reply-references"]},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := s.Plan(bc.env, &bc.h)
				_ = p.Decide(Answer{Tally: Tally{Status: StatusCounted, Count: 1}})
			}
		})
	}
}
