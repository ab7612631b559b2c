package sim

// The report as the command prints it: a summary, a table of the
// scenarios, and notes.

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// WriteText writes the report as a table with its summary and notes.
func (r *Report) WriteText(w io.Writer) error {
	p := r.Policy
	fmt.Fprintf(w, "simulated storm: 1 original + %d reply-alls to a list of %s over %s (curve %s, seed %d), %d %s, %s store\n",
		r.Replies, thousands(int64(r.Audience)), r.Duration, r.Curve, r.Seed, r.Nodes, plural(r.Nodes, "node"), r.Backend)
	if r.Clients != "" {
		mix, _ := ParseMix(r.Clients) // Run wrote it from a valid mix
		fmt.Fprintf(w, "replies: clients by weight %s; %s answer a reply picked at random among those delivered, the others the original\n",
			describeMix(mix), strconv.FormatFloat(r.ReplyShare*100, 'f', -1, 64)+"%")
	}
	fmt.Fprintf(w, "policy: min_audience %s, ", thousands(int64(p.MinAudience)))
	var offInCount []string // the limits the count rule only scenario turns off
	for _, l := range policy.LimitRules {
		fmt.Fprintf(w, "%s %s, ", l.Key, thousands(p.Limits[l.Key]))
		if l.Rule != policy.RuleMaxReplies {
			offInCount = append(offInCount, l.Key+" 0")
		}
	}
	fmt.Fprintf(w, "window %s, block_for %s, action %s, mode %s\n\n", p.Window, p.BlockFor, p.Action, p.Mode)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tREPLIES\tACCEPTED\tREFUSED\tDELIVERIES\tFIRST REFUSAL")
	var tagged, threads []string
	split := false
	for _, s := range r.Scenarios {
		if s.Simulated {
			threads = append(threads, fmt.Sprintf("%d %s (%s)", s.Threads, plural(s.Threads, "thread"), s.Name))
			split = split || s.Threads > 1
		}
		first := "-"
		if s.FirstRefusal != nil {
			first = "+" + time.Duration(*s.FirstRefusal*float64(time.Second)).Round(time.Second).String()
			if s.FirstRefusalRule != "" {
				first += " (" + s.FirstRefusalRule + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Sent, s.Accepted, s.Refused, thousands(s.Deliveries), first)
		if s.Tagged > 0 {
			tagged = append(tagged, fmt.Sprintf("%s %d", s.Name, s.Tagged))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ndeliveries: %s mailboxes for the original and for each reply delivered. unprotected is computed;\n", thousands(int64(r.Audience)))
	fmt.Fprintf(w, "the others ran through %d real milter %s on a fresh %s store (count rule only: %s).\n",
		r.Nodes, plural(r.Nodes, "node"), r.Backend, strings.Join(offInCount, ", "))
	if split {
		fmt.Fprintf(w, "threads: the filter counted the storm's messages in %s.\n", strings.Join(threads, ", "))
	}
	if len(tagged) > 0 {
		fmt.Fprintf(w, "monitor: replies delivered with the %s header instead of refused: %s.\n", r.Header, strings.Join(tagged, ", "))
	}
	if r.Cleanup != "" {
		fmt.Fprintf(w, "redis: private prefixes %s; %s\n", strings.Join(r.Prefixes, ", "), r.Cleanup)
	}
	return nil
}

// thousands formats n with commas: 68,850,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
