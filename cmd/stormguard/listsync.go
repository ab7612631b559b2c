package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/listsync"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/store"
)

// List sizes from where they live: stormguard lists sync, and serve's
// sync every listsync.every. listsync reads; this file writes what it read
// to the store (Redis directly, or the daemon's memory store through its
// admin API, the way lists set does), and only after every source has
// succeeded. Lists a source no longer names are left as they are: they
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
				return fmt.Errorf("%s; nothing written, the previous list sizes stay", admin.OneLine(err))
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

// startListSync runs the sync every listsync.every in serve (nothing
// when it is 0): the first at once, then on the period. Each writes
// through the store and re-reads the site settings, so the next message
// sees the new sizes. It returns a function that stops it and waits.
func startListSync(cfg *config.Config, st store.Store, f *milter.Filter, reg *prometheus.Registry, log *slog.Logger) (stop func()) {
	lc := cfg.ListSyncConfig()
	ast, ok := st.(store.Admin)
	if cfg.ListSync.Every <= 0 || !lc.Enabled() || !ok {
		return func() {}
	}
	lastOK := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "stormguard_listsync_last_success_timestamp_seconds",
		Help: "When list sizes were last synced from LDAP and the Postfix maps (Unix time; 0: not yet).",
	})
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stormguard_listsync_failures_total",
		Help: "List syncs that failed and wrote nothing.",
	})
	reg.MustRegister(lastOK, failures)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cfg.ListSync.Every)
		defer t.Stop()
		for {
			if err := syncOnce(ctx, lc, st, ast, f, log); err != nil {
				if ctx.Err() != nil {
					return
				}
				failures.Inc()
			} else {
				lastOK.SetToCurrentTime()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// syncOnce is one sync in serve, logging one line either way.
func syncOnce(ctx context.Context, lc listsync.Config, st store.Store, ast store.Admin, f *milter.Filter, log *slog.Logger) error {
	res, err := listsync.Collect(ctx, lc, lc.Sources())
	if err != nil {
		var se *listsync.SourceError
		if errors.As(err, &se) {
			log.Warn("list sync failed: nothing written, the previous list sizes stay", "source", se.Source, "err", admin.OneLine(se.Err))
		} else {
			log.Warn("list sync failed: nothing written, the previous list sizes stay", "err", admin.OneLine(err))
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, lc.Timeout)
	defer cancel()
	g, err := st.Globals(wctx)
	if err != nil {
		log.Warn("list sync: cannot read the store's list sizes: nothing written, the previous list sizes stay", "err", admin.OneLine(err))
		return err
	}
	changes, unchanged := listsync.Plan(g.Lists, res.Sizes)
	for i, c := range changes {
		if err := ast.SetList(wctx, c.List, c.New); err != nil {
			log.Warn("list sync: writing to the store failed", "list", c.List, "written", i, "changes", len(changes), "err", admin.OneLine(err))
			return err
		}
	}
	if len(changes) > 0 {
		if err := f.RefreshGlobals(wctx); err != nil {
			log.Warn("list sync: cannot re-read the site settings; the next refresh will", "err", err)
		}
	}
	log.Info("lists synced", "lists", len(res.Sizes), "changed", len(changes), "unchanged", unchanged, "below_min", res.Below,
		"elapsed", res.Elapsed.Round(time.Millisecond))
	return nil
}
