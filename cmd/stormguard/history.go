package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
)

// listHistory is `stormguard storms --since`: the storms (and near misses)
// kept for report.history, as a table, JSON or CSV.
func listHistory(cmd *cobra.Command, stdout io.Writer, sinceArg string, nearMisses bool, limit int, asJSON, asCSV bool) error {
	d, err := parseAge(sinceArg)
	if err != nil {
		return fmt.Errorf("--since %q: %w", sinceArg, err)
	}
	if limit < 0 || limit > history.MaxLimit {
		return fmt.Errorf("--limit %d: want 1 to %d with --since", limit, history.MaxLimit)
	}
	a, ctx, done, err := openAdmin(cmd, stdout)
	if err != nil {
		return err
	}
	defer done()
	since := time.Now().Add(-d)
	views, err := a.api.Storms(ctx, since, nearMisses, limit)
	if err != nil {
		return err
	}
	switch {
	case asJSON:
		return writeJSON(stdout, views)
	case asCSV:
		return writeStormsCSV(stdout, views)
	}
	if len(views) == 0 {
		what := "no storms"
		if nearMisses {
			what = "no storms or near misses"
		}
		fmt.Fprintf(stdout, "%s since %s (%s ago; report.history keeps %s)\n", what, since.UTC().Format(time.RFC3339), sinceArg, a.cfg.Report.History)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "THREAD\tKIND\tFIRST SEEN\tBLOCKED AT\tRULE\tAUDIENCE\tACCEPTED\tREFUSED\tALLOWED\tSAVED\tSTATE\tLISTS\tORIGINAL SENDER\tSUBJECT")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", v.Thread, v.Kind,
			v.FirstSeen.Format(time.RFC3339), fmtTime(v.StormAt), orDash(v.StormRule), v.Audience, v.Accepted, v.Refused,
			v.Allowed, v.Saved, orDash(v.State), orDash(text.Clean(strings.Join(v.Lists, ","), 40)),
			orDash(text.Clean(v.OriginalSender, 40)), text.Clean(v.Subject, 50))
	}
	return tw.Flush()
}

// writeJSON prints v indented, with the C1 control characters (U+0080 to
// U+009F, which encoding/json leaves raw and some terminals obey) and the
// bidirectional overrides escaped as \uXXXX: they can only stand inside
// JSON strings, where the escape means the same character.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	var out strings.Builder
	for _, r := range string(b) {
		if r >= 0x80 && r <= 0x9f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		}
		out.WriteRune(r)
	}
	out.WriteByte('\n')
	_, err = io.WriteString(w, out.String())
	return err
}

var stormsCSVHeader = []string{"thread", "kind", "subject", "original_sender", "lists", "audience", "first_seen", "last_seen",
	"storm_at", "storm_rule", "near_miss_at", "accepted", "refused", "allowed", "saved", "state"}

func writeStormsCSV(w io.Writer, views []admin.StormView) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(stormsCSVHeader)
	opt := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	for _, v := range views {
		_ = cw.Write([]string{v.Thread, v.Kind, csvText(v.Subject), csvText(v.OriginalSender), csvText(strings.Join(v.Lists, " ")),
			strconv.Itoa(v.Audience), v.FirstSeen.Format(time.RFC3339), v.LastSeen.Format(time.RFC3339), opt(v.StormAt),
			v.StormRule, opt(v.NearMissAt), strconv.Itoa(v.Accepted), strconv.Itoa(v.Refused), strconv.Itoa(v.Allowed),
			strconv.FormatInt(v.Saved, 10), v.State})
	}
	cw.Flush()
	return cw.Error()
}

// csvText is a sender's text as a CSV cell: one line without control
// characters (a CSV printed on a terminal must not drive it), and, when
// it starts like a formula (= + - @), prefixed with ' so that a
// spreadsheet shows it instead of running it.
func csvText(s string) string {
	s = text.Clean(s, 0)
	if t := strings.TrimLeft(s, " "); t != "" && strings.ContainsRune("=+-@", rune(t[0])) {
		return "'" + s
	}
	return s
}

// parseAge reads how far back to look: a Go duration (36h, 90m) with
// days allowed in front (30d, 1d12h).
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("want a duration such as 30d, 36h or 1d12h")
		}
		d, s = time.Duration(n*24*float64(time.Hour)), s[i+1:]
	}
	if s != "" {
		rest, err := time.ParseDuration(s)
		if err != nil || rest < 0 {
			return 0, fmt.Errorf("want a duration such as 30d, 36h or 1d12h")
		}
		d += rest
	}
	if d <= 0 {
		return 0, fmt.Errorf("want a positive duration such as 30d, 36h or 1d12h")
	}
	return d, nil
}
