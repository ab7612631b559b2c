package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/text"
)

func newShowCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show THREAD",
		Short: "Show one thread: counts, block, override and every reply sender, allowed or blocked",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := admin.ParseThread(args[0])
			if err != nil {
				return err
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			v, err := a.api.Thread(ctx, t)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
			row("thread", v.Thread)
			row("state", v.State)
			row("subject", text.Clean(v.Subject, 0))
			row("original sender", orDash(text.Clean(v.OriginalSender, 0)))
			row("started", v.Started.Format(time.RFC3339))
			row("last seen", v.LastSeen.Format(time.RFC3339))
			row("audience", strconv.Itoa(v.Audience))
			row("replies", fmt.Sprintf("%d (accepted %d, blocked %d, allowed by override %d; %d in the window)",
				v.Replies, v.Accepted, v.Blocked, v.Allowed, v.InWindow))
			if v.StormAt != nil {
				row("storm", fmt.Sprintf("%s (%s)", fmtTime(v.StormAt), v.StormRule))
			}
			if v.BlockActive {
				row("block expires", orDash(fmtTime(v.BlockExpires)))
			}
			if v.Override != "" {
				exp := "no expiry"
				if v.OverrideExpires != nil {
					exp = "until " + fmtTime(v.OverrideExpires)
				}
				row("override", v.Override+", "+exp)
			}
			tw.Flush()
			fmt.Fprintln(stdout)
			tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SENDER\tVERDICT\tLAST STATUS")
			for _, s := range v.Senders {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", text.Clean(s.Sender, 0), s.Verdict, s.Status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// newOverrideCmd makes allow, block and reset.
func newOverrideCmd(stdout io.Writer, verb string) *cobra.Command {
	var dur time.Duration
	short := map[string]string{
		"allow": "Let a thread's replies through on every node (even while it is blocked), optionally --for a while",
		"block": "Refuse a thread's large-audience replies on every node now, optionally --for a while",
		"reset": "Forget a thread's counts, block, override and senders: it starts counting afresh",
	}[verb]
	cmd := &cobra.Command{
		Use:   verb + " THREAD",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := admin.ParseThread(args[0])
			if err != nil {
				return err
			}
			if dur < 0 {
				return fmt.Errorf("--for %s: must be positive", dur)
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			res, err := a.api.Override(ctx, t, verb, dur, operator())
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("thread %s: %s", t, verb)
			if res.Expires != nil {
				msg += fmt.Sprintf(" for %s (until %s)", dur, res.Expires.Format(time.RFC3339))
			}
			where := "on every node"
			if a.memory() {
				where = "on the daemon"
			}
			fmt.Fprintf(stdout, "%s; in force %s from the next message\n", msg, where)
			a.warn(res.Warning)
			return nil
		},
	}
	if verb != "reset" {
		cmd.Flags().DurationVar(&dur, "for", 0, "how long, e.g. 30m or 2h (default: until reset or deleted)")
	}
	return cmd
}
