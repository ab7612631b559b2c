package reportpage

import (
	"html/template"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/text"
)

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
	"p":    text.Printable,
	"time": showTime,
	"join": func(s []string) string { return text.Printable(strings.Join(s, ", ")) },
	"kind": kindLabel,
}

func kindLabel(k string) string {
	if k == "near_miss" {
		return "near miss"
	}
	return k
}
