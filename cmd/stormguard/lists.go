package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
)

func newListsCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lists",
		Short: "Show list sizes and the policy a message to each list gets (the store's: Redis hashes stormguard:lists and stormguard:listpolicy or the daemon's memory; and the config file's); lists set ADDR N [--max-replies N ...], lists delete ADDR, lists sync",
		Args:  cobra.NoArgs,
		RunE: withAdmin(stdout, func(cmd *cobra.Command, a *session, ctx context.Context, _ []string) error {
			lists, err := a.api.Lists(ctx)
			if err != nil {
				return err
			}
			if len(lists) == 0 {
				fmt.Fprintln(stdout, "no lists registered; every address counts 1 (stormguard lists set ADDR MEMBERS)")
				return nil
			}
			return printLists(stdout, lists)
		}),
	}
	var pf listPolicyFlags
	set := &cobra.Command{
		Use:   "set ADDRESS MEMBERS [--min-audience N]" + limitFlagsUse() + " [--action A] [--posters a@b,@dom] [--clear-policy]",
		Short: "Register a list's member count, and with any policy flag its own policy (replacing the one it had), in the store (Redis: every node within store.refresh; memory: the daemon at once)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n <= 0 {
				return fmt.Errorf("members %q: want a positive whole number", args[1])
			}
			if err := admin.CheckList(args[0], n); err != nil {
				return err
			}
			spec, setPolicy, err := pf.text(cmd)
			if err != nil {
				return err
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			l, err := a.api.SetList(ctx, args[0], n)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "list %s: %d members; %s\n", l.List, l.Members, a.reach())
			if setPolicy {
				v, err := a.api.SetListPolicy(ctx, args[0], spec)
				if err != nil {
					return err
				}
				own := "none (the site's)"
				if v.Policy != "" {
					own = text.Clean(v.Policy, 0) + " (" + v.PolicyFrom + ")"
				}
				fmt.Fprintf(stdout, "list %s: own policy %s; a message to it alone: %s\n", text.Clean(v.List, 0), own, effective(v))
			}
			return nil
		},
	}
	pf.add(set)
	del := &cobra.Command{
		Use:   "delete ADDRESS",
		Short: "Remove a list's member count from the store",
		Args:  cobra.ExactArgs(1),
		RunE: withAdmin(stdout, func(cmd *cobra.Command, a *session, ctx context.Context, args []string) error {
			left, err := a.api.DeleteList(ctx, args[0])
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("list %s: removed from %s", left.List, a.where())
			if left.Members > 0 {
				msg += fmt.Sprintf("; the config file still says %d members", left.Members)
			}
			fmt.Fprintln(stdout, msg)
			return nil
		}),
	}
	cmd.AddCommand(set, del, newListsSyncCmd(stdout))
	return cmd
}

// listPolicyFlags are lists set's policy flags: one per list policy
// setting (policy.ListPolicyKeys), --max-replies for max_replies.
type listPolicyFlags struct {
	minAudience     int
	limits          []int64 // by policy.LimitRules
	action, posters string
	clear           bool
}

// limitFlagsUse is the limit flags in lists set's usage line.
func limitFlagsUse() string {
	var s string
	for _, r := range policy.LimitRules {
		s += " [--" + flagName(r.Key) + " N]"
	}
	return s
}

// flagName is the lists set flag of a list policy setting.
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

func (f *listPolicyFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.minAudience, "min-audience", 0, "this list's policy.min_audience")
	f.limits = make([]int64, len(policy.LimitRules))
	for i, r := range policy.LimitRules {
		fl.Int64Var(&f.limits[i], flagName(r.Key), 0, fmt.Sprintf("this list's policy.%s: %s", r.Key, r.Help))
	}
	fl.StringVar(&f.action, "action", "", "this list's policy.action: reject, tempfail, hold or monitor")
	fl.StringVar(&f.posters, "posters", "", "only these may post to the list (besides gate.posters and exempt senders): senders, @domains, SASL logins, comma-separated")
	fl.BoolVar(&f.clear, "clear-policy", false, "remove the list's own policy from the store")
}

// text is the policy the flags give, as policy.ParseListPolicy reads it,
// and whether any was given ("" with --clear-policy).
func (f *listPolicyFlags) text(cmd *cobra.Command) (string, bool, error) {
	fl := cmd.Flags()
	fields := map[string]any{}
	if fl.Changed("min-audience") {
		fields["min_audience"] = f.minAudience
	}
	for i, r := range policy.LimitRules {
		if fl.Changed(flagName(r.Key)) {
			fields[r.Key] = f.limits[i]
		}
	}
	if fl.Changed("action") {
		fields["action"] = f.action
	}
	if fl.Changed("posters") {
		fields["posters"] = f.posters
	}
	if f.clear && len(fields) > 0 {
		return "", false, errors.New("--clear-policy: give it alone, without other policy flags")
	}
	if len(fields) == 0 {
		return "", f.clear, nil
	}
	p, err := policy.ListPolicyFromFields(fields)
	if err != nil {
		return "", false, fmt.Errorf("list policy: %s", text.OneLine(err))
	}
	return p.String(), true, nil
}

// printLists is the lists table: size and where it comes from, then the
// policy a message to that list alone gets and where the list's own comes
// from ("site" when it has none). Every value is made one clean line.
func printLists(w io.Writer, lists []admin.ListView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"LIST", "MEMBERS", "FROM", "MIN_AUDIENCE"}
	for _, r := range policy.LimitRules {
		head = append(head, strings.ToUpper(r.Key))
	}
	fmt.Fprintln(tw, strings.Join(append(head, "ACTION", "POSTERS", "POLICY_FROM"), "\t"))
	for _, l := range lists {
		members, from := strconv.Itoa(l.Members), l.From
		if from == "" {
			members, from = "-", "-"
		}
		posters, pfrom := "-", "site"
		if len(l.Posters) > 0 {
			posters = strings.Join(l.Posters, ",")
		}
		if l.PolicyFrom != "" {
			pfrom = l.PolicyFrom
		}
		row := []string{text.Clean(l.List, 80), members, from, strconv.Itoa(l.MinAudience)}
		for _, r := range policy.LimitRules {
			row = append(row, limitText(l.Limits[r.Key]))
		}
		row = append(row, text.Clean(l.Action, 10), text.Clean(posters, 120), pfrom)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func limitText(n int64) string {
	if n == 0 {
		return "off"
	}
	return strconv.FormatInt(n, 10)
}

// effective is a ListView's effective policy on one line.
func effective(v admin.ListView) string {
	s := fmt.Sprintf("min_audience %d", v.MinAudience)
	for _, r := range policy.LimitRules {
		s += fmt.Sprintf(", %s %s", r.Key, limitText(v.Limits[r.Key]))
	}
	s += ", action " + v.Action
	if len(v.Posters) > 0 {
		s += ", posters " + text.Clean(strings.Join(v.Posters, ","), 120)
	}
	return s
}

func newModeCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "mode [enforce|monitor|off|default]",
		Short: "Show or set the site-wide mode (Redis key stormguard:mode for every node, or the daemon's with the memory store)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if _, err := admin.ParseMode(args[0]); err != nil || args[0] == "" {
					return fmt.Errorf("mode %q: want enforce, monitor, off or default", args[0])
				}
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			if len(args) == 0 {
				m, err := a.api.Mode(ctx)
				if err != nil {
					return err
				}
				switch {
				case m.From != "config" && a.memory():
					fmt.Fprintf(stdout, "%s (set on the daemon with stormguard mode)\n", m.Mode)
				case m.From != "config":
					fmt.Fprintf(stdout, "%s (stormguard:mode)\n", m.Mode)
				case a.memory():
					fmt.Fprintf(stdout, "%s (the config's mode; none is set on the daemon)\n", m.Mode)
				default:
					fmt.Fprintf(stdout, "%s (the config's mode; stormguard:mode is not set)\n", m.Mode)
				}
				return nil
			}
			m, err := a.api.SetMode(ctx, args[0], operator())
			if err != nil {
				return err
			}
			shown := m.Mode
			if m.From == "config" {
				shown += " (the config's default)"
			}
			fmt.Fprintf(stdout, "site mode: %s; %s\n", shown, a.reach())
			a.warn(m.Warning)
			return nil
		},
	}
}
