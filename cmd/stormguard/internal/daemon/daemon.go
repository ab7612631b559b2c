// Package daemon is the milter daemon: it opens the store, serves the
// milter protocol through milter's filter, and around it the HTTP server
// (metrics, health, the admin API, the report page), the observer that
// turns verdicts into metrics, events and history, configuration reloads
// on SIGHUP and the periodic list sync. It decides nothing itself: the
// decisions live in policy, the state in store, the protocol in milter.
// It reads no configuration sources: the caller loads cfg (package main's
// serve command).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/netlimit"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Version   string                         // this build's version, logged at start
	UserAgent string                         // names this build in webhook POSTs
	Reload    func() (*config.Config, error) // reads the configuration again on SIGHUP, from the sources it was first read from
	Level     *slog.LevelVar                 // the logger's level (NewLogger's), which a reload sets
}

// Run serves mail with cfg until ctx ends (SIGTERM, SIGINT), then shuts
// down gracefully. On SIGHUP it reads its configuration again through
// o.Reload (reload.go).
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, o Options) error {
	re := reloadable{load: o.Reload, level: o.Level}
	if re.load == nil {
		re.load = func() (*config.Config, error) {
			return nil, errors.New("daemon: no configuration source to reload from")
		}
	}
	if re.level == nil {
		re.level = new(slog.LevelVar)
	}
	st, fallback, hist, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	f, err := milter.NewFilter(cfg.FilterConfig(), st, fallback, log, nil)
	if err != nil {
		return err
	}

	// Events and metrics: the observer only counts and queues.
	notifier, err := NewNotifier(cfg, st, log, o.UserAgent, true)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if !notifier.Close(ctx) {
			log.Warn("shutting down: some events were not delivered")
		}
	}()
	lister, _ := st.(store.Lister)
	met := newMetrics(f, notifier, lister)
	defer watchReload(newReloader(cfg, re, f, met.reg, log))() // SIGHUP; reload.go
	sum := events.NewSummarizer()
	rec, err := startRecorder(cfg, st, hist, log)
	if err != nil {
		return err
	}
	if rec != nil {
		met.reg.MustRegister(historyCollectors(rec)...)
		defer func() { // after the milter server: the last decisions are in
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if !rec.Close(ctx) {
				log.Warn("shutting down: some history updates were not written")
			}
		}()
	}
	f.SetObserver(&observer{m: met, n: notifier, sum: sum, rec: rec})
	srv := milter.NewServerWith(f, cfg.ServerLimits())
	var httpConns netlimit.Stats
	met.reg.MustRegister(newConnCollector(map[string]*netlimit.Stats{"milter": &srv.Conns, "http": &httpConns}))
	stopHTTP, err := serveHTTP(cfg, st, hist, f, notifier, met, &httpConns, log)
	if err != nil {
		return err
	}
	defer stopHTTP()
	sumCtx, stopSum := context.WithCancel(context.Background())
	sumDone := make(chan struct{})
	go func() { defer close(sumDone); sum.Run(sumCtx, notifier, cfg.Alerts.SummaryEvery) }()
	defer func() { stopSum(); <-sumDone }() // the last summary goes out before the notifier closes
	if err := f.RefreshGlobals(ctx); err != nil {
		log.Warn("cannot read site settings from the store yet; using the config file's", "err", err)
	}
	defer startListSync(cfg, st, f, met.reg, log)() // listsync.every; listsync.go
	mode, _ := cfg.SocketMode()
	ln, err := milter.Listen(cfg.Listen, mode)
	if err != nil {
		return err
	}

	refreshCtx, stopRefresh := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRefresh()
	go f.RunRefresher(refreshCtx)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	adminOn, _ := cfg.AdminServed()
	attrs := append([]any{"version", o.Version, "listen", cfg.Listen, "http", cfg.HTTP.Listen, "admin_api", adminOn, "store", cfg.Store.Backend,
		"min_audience", cfg.Policy.MinAudience}, limitAttrs(cfg.Policy.Limits)...)
	log.Info("stormguard started", append(attrs, "action", cfg.Policy.Action)...)

	select {
	case err := <-errc:
		return fmt.Errorf("milter server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: waiting up to 10s for the MTA to close its connections")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	<-errc
	log.Info("stopped", "decisions", f.Stats.Decisions.Load())
	return nil
}

// NewLogger is the daemon's logger and its level, which a reload sets.
func NewLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	setLevel(level, cfg)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// openStore returns the configured store, the history kept beside it
// and, for Redis, the memory store this node falls back to. The history
// lives where the store does: on the store's Redis client under its
// prefix, or in memory with the memory store's thread bound.
func openStore(cfg *config.Config) (st, fallback store.Store, h history.Store, err error) {
	switch cfg.Store.Backend {
	case "redis":
		r, err := store.OpenRedis(cfg.RedisConfig())
		if err != nil {
			return nil, nil, nil, err
		}
		return r, store.NewMemoryWith(cfg.MemoryConfig()), history.NewRedis(r.Client(), r.Keys()), nil
	default:
		mc := cfg.MemoryConfig()
		return store.NewMemoryWith(mc), nil, history.NewMemory(mc.MaxThreads), nil
	}
}

// startRecorder starts the history recorder writing to h, reading live
// threads from st; nil when st keeps no thread records to merge.
func startRecorder(cfg *config.Config, st store.Store, h history.Store, log *slog.Logger) (*history.Recorder, error) {
	threads, ok := st.(history.Threads)
	if !ok {
		log.Warn("the store keeps no thread records: no storms or near misses are recorded")
		return nil, nil
	}
	return history.NewRecorder(cfg.ReportConfig(), h, threads, log, nil)
}

// limitAttrs are the limit rules' values in l as log attributes:
// "max_replies", 10, "delivery_budget", 1000000.
func limitAttrs(l policy.Limits) []any {
	var out []any
	for _, r := range policy.LimitRules {
		out = append(out, r.Key, r.Limit(l))
	}
	return out
}
