package reportpage

import (
	"fmt"
	"html/template"
	"strings"
	"time"
	"unicode"
)

// Printable shows s with every control or format character (CR, LF, ESC,
// bidi overrides, …) as a Go escape (\r, \n, \x1b, \u202e), so that a
// hostile subject cannot break a line, drive a terminal or reorder text.
// html/template escapes the rest for HTML.
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

// timeFormat is how the page and the CSV show a time: UTC, to the minute
// on the page.
const timeFormat = "2006-01-02 15:04 UTC"

func showTime(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return ""
		}
		return v.UTC().Format(timeFormat)
	case *time.Time:
		if v == nil || v.IsZero() {
			return ""
		}
		return v.UTC().Format(timeFormat)
	}
	return ""
}

var funcs = template.FuncMap{
	"p":    Printable,
	"time": showTime,
	"join": func(s []string) string { return Printable(strings.Join(s, ", ")) },
	"kind": kindLabel,
}

func kindLabel(k string) string {
	if k == "near_miss" {
		return "near miss"
	}
	return k
}
