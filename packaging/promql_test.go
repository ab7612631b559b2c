package packaging

import (
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var (
	promqlString   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promqlNumber   = regexp.MustCompile(`[0-9.]+[A-Za-z_:]*`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true,
		"offset": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names a PromQL expression selects, sorted
// and without duplicates: every identifier that is not a function or
// aggregation (followed by "("), a keyword, a label in a grouping clause,
// or inside a string, label matchers or a range. Grafana's variables
// ($__rate_interval, $instance) may stand in ranges and matchers.
func metricNames(expr string) []string {
	s := promqlString.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlNumber.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	for _, m := range promqlIdent.FindAllStringSubmatch(s, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || promqlKeywords[name] || strings.HasPrefix(name, "$") {
			continue
		}
		seen[name] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="stormguard"} == 0`, []string{"up"}},
		{`sum by (instance, outlet) (increase(stormguard_events_total{result=~"dropped|failed"}[15m])) > 0`, []string{"stormguard_events_total"}},
		{`histogram_quantile(0.99, sum by (le, op) (rate(stormguard_store_call_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`,
			[]string{"stormguard_store_call_duration_seconds_bucket"}},
		{`time() - max(a_seconds > 0) and on (instance) b_total offset 5m unless c`, []string{"a_seconds", "b_total", "c"}},
		{`rate(x{l="sum(y)"}[1m:30s]) / ignoring(op) group_left z`, []string{"x", "z"}},
		{`1e3 * 2 > bool 0x1f`, []string{}},
	} {
		if got := metricNames(tc.expr); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("metricNames(%s) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}
