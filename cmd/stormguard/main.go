// Command stormguard is a milter daemon for Postfix and Sendmail that stops
// reply-all storms, and the operator's tool to see and steer them.
//
// This package only wires things together: configuration, logging, signals,
// metrics, the HTTP server and subcommands. The decisions live in policy,
// the state in store, the protocol glue in milter, events and their
// delivery in events, and the operator's work on the state in admin.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/internal/netlimit"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/report"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/web"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs one command line and returns the exit code. Tests call it
// directly.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "stormguard: %v\n", err)
		return 1
	}
	return 0
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "stormguard",
		Short:         "A milter that stops reply-all storms",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("config", "", "config file (default "+config.DefaultFile+" if present)")
	root.AddCommand(newServeCmd(stderr), newCheckCmd(stdout),
		newStormsCmd(stdout), newShowCmd(stdout),
		newOverrideCmd(stdout, "allow"), newOverrideCmd(stdout, "block"), newOverrideCmd(stdout, "reset"),
		newListsCmd(stdout), newModeCmd(stdout), newSimulateCmd(stdout), newQueueCmd(stdout))
	root.AddCommand(newPostersCmd(stdout)) // posters.go
	return root
}

// configFrom loads the configuration named by the command's --config flag.
func configFrom(cmd *cobra.Command) (*config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	return config.Load(path, cmd.Flags())
}

func newServeCmd(logOut io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the milter daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := configFrom(cmd)
			if err != nil {
				return err
			}
			log, level := newLogger(cfg, logOut)
			return serve(cmd.Context(), cfg, log, reloadable{load: func() (*config.Config, error) { return configFrom(cmd) }, level: level})
		},
	}
	config.AddFlags(cmd.Flags()) // --listen, --log-level, --backend
	return cmd
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newLogger is the daemon's logger and its level, which a reload sets.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	setLevel(level, cfg)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// openStore returns the configured store and, for Redis, the memory store
// this node falls back to.
func openStore(cfg *config.Config) (st, fallback store.Store, err error) {
	switch cfg.Store.Backend {
	case "redis":
		r, err := store.OpenRedis(cfg.RedisConfig())
		if err != nil {
			return nil, nil, err
		}
		return r, store.NewMemoryWith(cfg.MemoryConfig()), nil
	default:
		return store.NewMemoryWith(cfg.MemoryConfig()), nil, nil
	}
}

// userAgent names this build in webhook POSTs and admin API requests.
func userAgent() string { return "stormguard/" + version }

// newNotifier starts the notifier for cfg: Redis pub/sub (or the log with
// the memory store) plus the webhook if configured; with enrich, storm
// events get their thread's original sender from the store.
func newNotifier(cfg *config.Config, st store.Store, log *slog.Logger, enrich bool) (*events.Notifier, error) {
	c := cfg.EventsConfig()
	c.UserAgent = userAgent()
	return events.NewNotifier(withStore(c, st, enrich), log)
}

// daemonAdmin is the admin API's work on the daemon's own store: events go
// out through the daemon's notifier, and a changed site setting is re-read
// at once, so the very next message sees it.
func daemonAdmin(cfg *config.Config, st admin.Store, f *milter.Filter, n *events.Notifier, log *slog.Logger) (admin.API, error) {
	return admin.NewDirect(cfg.AdminConfig(), st,
		func(e events.Event) string { n.Emit(e); return "" },
		func(ctx context.Context) {
			if err := f.RefreshGlobals(ctx); err != nil {
				log.Warn("cannot re-read the site settings after an admin API change; the next refresh will", "err", err)
			}
		})
}

// startRecorder starts the history recorder on st, or returns nil when st
// keeps no history.
func startRecorder(cfg *config.Config, st store.Store, log *slog.Logger) (*report.Recorder, error) {
	hs, ok := st.(report.Store)
	if !ok {
		log.Warn("the store keeps no history: no storms or near misses are recorded")
		return nil, nil
	}
	return report.New(cfg.ReportConfig(), hs, log, nil)
}

// serve runs the daemon until ctx ends (SIGTERM, SIGINT), then shuts down
// gracefully. On SIGHUP it re-reads its configuration (reload.go).
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, re reloadable) error {
	st, fallback, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	f, err := milter.NewFilter(cfg.FilterConfig(), st, fallback, log, nil)
	if err != nil {
		return err
	}

	// Events and metrics: the observer only counts and queues.
	notifier, err := newNotifier(cfg, st, log, true)
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
	rec, err := startRecorder(cfg, st, log)
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
	adminOn, adminWhy := cfg.AdminServed()
	if cfg.HTTP.Listen != "" {
		adminH, pageH := admin.Off(adminWhy), web.Off(adminWhy)
		if ast, ok := st.(admin.Store); ok && adminOn {
			api, err := daemonAdmin(cfg, ast, f, notifier, log)
			if err != nil {
				return err
			}
			if adminH, err = newAdminHandler(cfg, api); err != nil {
				return err
			}
			if pageH, err = newReportPage(cfg, api, log); err != nil {
				return err
			}
		}
		stopHTTP, err := startHTTP(cfg.HTTP.Listen, newHTTPHandler(met, st, cfg.Store.OnError, cfg.Redis.Timeout, adminH, pageH),
			cfg.HTTP.MaxConnections, cfg.HTTP.IdleTimeout, &httpConns, log)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
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
	log.Info("stormguard started", "version", version, "listen", cfg.Listen, "http", cfg.HTTP.Listen, "admin_api", adminOn, "store", cfg.Store.Backend,
		"min_audience", cfg.Policy.MinAudience, "max_replies", cfg.Policy.MaxReplies,
		"delivery_budget", cfg.Policy.DeliveryBudget, "action", cfg.Policy.Action)

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
