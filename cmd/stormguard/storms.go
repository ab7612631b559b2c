package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/store"
)

func newStormsCmd(stdout io.Writer) *cobra.Command {
	var asJSON, asCSV, all, nearMisses bool
	var limit int
	var since string
	cmd := &cobra.Command{
		Use:   "storms",
		Short: "List current and recent storms (--all: every recent large-audience thread; --since 30d: the history of storms and near misses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON && asCSV {
				return errors.New("--json and --csv exclude each other")
			}
			if since != "" {
				if all {
					return errors.New("--all lists live threads; with --since, --near-misses adds the threads that came close")
				}
				if !cmd.Flags().Changed("limit") {
					limit = 0 // every entry, up to history.MaxLimit
				}
				return listHistory(cmd, stdout, since, nearMisses, limit, asJSON, asCSV)
			}
			if nearMisses {
				return errors.New("--near-misses needs --since: near misses are in the history (e.g. --since 30d)")
			}
			if err := admin.CheckLimit(limit); err != nil || limit == 0 {
				return fmt.Errorf("--limit %d: want 1 to %d", limit, store.MaxListLimit)
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			views, err := a.api.Threads(ctx, limit, all)
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(views)
			case asCSV:
				return writeCSV(stdout, views)
			}
			if len(views) == 0 {
				what := "no storms"
				if all {
					what = "no large-audience threads"
				}
				fmt.Fprintf(stdout, "%s in the last %s\n", what, a.cfg.Store.Retention)
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "THREAD\tSTATE\tREPLIES\tACCEPTED\tBLOCKED\tSTARTED\tBLOCK EXPIRES\tORIGINAL SENDER\tSUBJECT")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", v.Thread, v.State, v.Replies, v.Accepted, v.Blocked,
					v.Started.Format(time.RFC3339), fmtTime(v.BlockExpires), orDash(text.Clean(v.OriginalSender, 40)), text.Clean(v.Subject, 50))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array of threads)")
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV with a header row")
	cmd.Flags().BoolVar(&all, "all", false, "include threads that never stormed")
	cmd.Flags().StringVar(&since, "since", "", "list the history instead: storms whose last activity is this recent, e.g. 30d, 36h or 1d12h (report.history keeps 90 days by default)")
	cmd.Flags().BoolVar(&nearMisses, "near-misses", false, "with --since: also the near misses (threads that reached report.near_miss of a limit without being blocked)")
	cmd.Flags().IntVar(&limit, "limit", 200, fmt.Sprintf("list at most this many threads, most recently seen first (at most %d); without --all every stormed, blocked or overridden thread is found, however many quiet ones", store.MaxListLimit))
	return cmd
}

var csvHeader = []string{"thread", "state", "subject", "original_sender", "started", "last_seen", "audience",
	"replies", "accepted", "blocked", "allowed", "storm_rule", "block_expires", "override", "override_expires"}

func writeCSV(w io.Writer, views []admin.ThreadView) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	opt := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	for _, v := range views {
		_ = cw.Write([]string{v.Thread, v.State, csvText(v.Subject), csvText(v.OriginalSender), v.Started.Format(time.RFC3339),
			v.LastSeen.Format(time.RFC3339), strconv.Itoa(v.Audience), strconv.Itoa(v.Replies),
			strconv.Itoa(v.Accepted), strconv.Itoa(v.Blocked), strconv.Itoa(v.Allowed), v.StormRule,
			opt(v.BlockExpires), v.Override, opt(v.OverrideExpires)})
	}
	cw.Flush()
	return cw.Error()
}
