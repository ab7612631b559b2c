package daemon

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/listsync"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/store"
)

// startListSync runs the sync every listsync.every (nothing
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
			log.Warn("list sync failed: nothing written, the previous list sizes stay", "source", se.Source, "err", text.OneLine(se.Err))
		} else {
			log.Warn("list sync failed: nothing written, the previous list sizes stay", "err", text.OneLine(err))
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, lc.Timeout)
	defer cancel()
	g, err := st.Globals(wctx)
	if err != nil {
		log.Warn("list sync: cannot read the store's list sizes: nothing written, the previous list sizes stay", "err", text.OneLine(err))
		return err
	}
	changes, unchanged := listsync.Plan(g.Lists, res.Sizes)
	for i, c := range changes {
		if err := ast.SetList(wctx, c.List, c.New); err != nil {
			log.Warn("list sync: writing to the store failed", "list", c.List, "written", i, "changes", len(changes), "err", text.OneLine(err))
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
