package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/listsync"
)

// List sizes from where they live: stormguard lists sync (the daemon's
// own sync every listsync.every is internal/daemon's listsync.go).
// listsync reads; this file writes what it read to the store (Redis
// directly, or the daemon's memory store through its admin API, the way
// lists set does), and only after every source has succeeded. Lists a source no longer names are left as they are: they
// may have been set by hand (lists delete removes one).

func newListsSyncCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Read list sizes from LDAP and the Postfix alias/virtual maps (listsync.*) and write them to the store; a failure writes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dry, _ := cmd.Flags().GetBool("dry-run")
			cfg, err := configFrom(cmd)
			if err != nil {
				return err
			}
			lc := cfg.ListSyncConfig()
			if !lc.Enabled() {
				return errors.New("lists sync: nothing to read: set listsync.ldap.url, listsync.alias_maps or listsync.virtual_maps")
			}
			res, err := listsync.Collect(cmd.Context(), lc, lc.Sources())
			if err != nil {
				return fmt.Errorf("%s; nothing written, the previous list sizes stay", text.OneLine(err))
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			views, err := a.api.Lists(ctx)
			if err != nil {
				return err
			}
			current := map[string]int{}
			for _, v := range views {
				if v.From != "config" { // the store's; the config's are not the store's to update
					current[v.List] = v.Members
				}
			}
			changes, unchanged := listsync.Plan(current, res.Sizes)
			printChanges(stdout, changes)
			written := 0
			if !dry {
				for _, c := range changes {
					wctx, cancel := context.WithTimeout(cmd.Context(), adminTimeout)
					_, err := a.api.SetList(wctx, c.List, c.New)
					cancel()
					if err != nil {
						return fmt.Errorf("lists sync: writing %s: %w (%d of %d changes written)", c.List, err, written, len(changes))
					}
					written++
				}
			}
			fmt.Fprintln(stdout, summary(res, len(changes), unchanged, current))
			if dry {
				fmt.Fprintln(stdout, "dry run: nothing written")
			} else if written > 0 {
				fmt.Fprintf(stdout, "%d written; %s\n", written, a.reach())
			}
			return nil
		},
	}
	cmd.Flags().Bool("dry-run", false, "print what would change, write nothing")
	return cmd
}

// printChanges prints one line per changed list: old -> new.
func printChanges(w io.Writer, changes []listsync.Change) {
	if len(changes) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIST\tOLD\tNEW")
	for _, c := range changes {
		old := "-"
		if c.Old > 0 {
			old = fmt.Sprint(c.Old)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.List, old, c.New)
	}
	_ = tw.Flush()
}

// summary is the totals line of one sync; current are the store's sizes
// before it.
func summary(res listsync.Result, changed, unchanged int, current map[string]int) string {
	skipped, kept := 0, 0
	for _, st := range res.Stats {
		skipped += st.Skipped
	}
	for addr := range current {
		if _, ok := res.Sizes[addr]; !ok {
			kept++
		}
	}
	s := fmt.Sprintf("%d lists from %s in %s: %d changed, %d unchanged, %d below listsync.min_members (not written), %d in the store from elsewhere (kept)",
		len(res.Sizes), strings.Join(slices.Sorted(maps.Keys(res.Stats)), "; "), res.Elapsed.Round(time.Millisecond),
		changed, unchanged, res.Below, kept)
	if skipped > 0 {
		s += fmt.Sprintf(", %d unreadable values skipped", skipped)
	}
	return s
}
