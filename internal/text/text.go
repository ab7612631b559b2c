// Package text makes text that came from outside (a subject, a sender, an
// error wrapping either) safe to show on one line: Clean for a terminal,
// Printable for a web page or a CSV, OneLine for an error's text. The
// daemon's logs, the admin API, the report page, the simulator and the
// subcommands all show such text, so this package sits below them all.
//
// It imports nothing of the project and must not: every layer may use it.
// It decides nothing about mail and does no I/O.
package text

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// OneLine folds an error's text onto one line: line breaks become "; "
// and every run of white space one space.
func OneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// Clean makes text safe for one line of a terminal, cut to n runes
// (0: no limit): every control character becomes a space, C0 (CR, LF, ESC
// and the rest), DEL and C1 (U+0080–U+009F, where U+009B is a CSI on some
// terminals), and so does every invisible format character (Unicode Cf:
// the bidirectional overrides that make text read other than it is
// stored, U+202A–U+202E and U+2066–U+2069, zero-width characters) and
// U+FFFD, which invalid UTF-8 becomes.
func Clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); n > 0 && len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

// Printable shows s with every control or format character (CR, LF, ESC,
// bidi overrides, …) and the line and paragraph separators as a Go escape
// (\r, \n, \x1b, \u202e), so that a hostile subject cannot break a line,
// drive a terminal or reorder text, and a reader sees what was there.
// It escapes nothing else: html/template does that for HTML.
func Printable(s string) string {
	if !strings.ContainsFunc(s, hidden) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if !hidden(r) {
			b.WriteRune(r)
			continue
		}
		switch r {
		case '\r':
			b.WriteString(`\r`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		}
	}
	return b.String()
}

// hidden: a rune that does something other than show a glyph.
func hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}
