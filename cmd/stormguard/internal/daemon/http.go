package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/netlimit"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/reportpage"
	"github.com/stormguard/stormguard/store"
)

// pinger is a store that can say whether it is reachable (Redis).
type pinger interface {
	Ping(ctx context.Context) error
}

// serveHTTP starts the HTTP server on http.listen (nothing when it is
// empty): metrics, health, and the admin API and report page when
// http.admin serves them on this store. It returns a function that stops
// it.
func serveHTTP(cfg *config.Config, st store.Store, h history.Store, f *milter.Filter, n *events.Notifier, met *metrics, conns *netlimit.Stats, log *slog.Logger) (stop func(), err error) {
	if cfg.HTTP.Listen == "" {
		return func() {}, nil
	}
	adminOn, adminWhy := cfg.AdminServed()
	adminH, pageH := admin.Off(adminWhy), reportpage.Off(adminWhy)
	if ast, ok := st.(admin.Store); ok && adminOn {
		api, err := daemonAdmin(cfg, ast, h, f, n, log)
		if err != nil {
			return nil, err
		}
		logins := admin.NewLogins(log) // wrong tokens, on the API and the page alike
		if adminH, err = newAdminHandler(cfg, api, logins); err != nil {
			return nil, err
		}
		if pageH, err = newReportPage(cfg, api, logins, log); err != nil {
			return nil, err
		}
	}
	return startHTTP(cfg.HTTP.Listen, newHTTPHandler(met, st, cfg.Store.OnError, cfg.Redis.Timeout, adminH, pageH),
		httpLimitsOf(cfg), conns, log)
}

// daemonAdmin is the admin API's work on the daemon's own store: events go
// out through the daemon's notifier, and a changed site setting is re-read
// at once, so the very next message sees it.
func daemonAdmin(cfg *config.Config, st admin.Store, h history.Store, f *milter.Filter, n *events.Notifier, log *slog.Logger) (admin.API, error) {
	return admin.NewDirect(cfg.AdminConfig(), st, h,
		func(e events.Event) string { n.Emit(e); return "" },
		func(ctx context.Context) {
			if err := f.RefreshGlobals(ctx); err != nil {
				log.Warn("cannot re-read the site settings after an admin API change; the next refresh will", "err", err)
			}
		})
}

// newHTTPHandler serves /metrics, /healthz, /readyz, under /admin/ admin
// (the admin API, or why it is off) and under / page (the report page, or
// why it is off).
func newHTTPHandler(m *metrics, st store.Store, onError string, timeout time.Duration, admin, page http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin)
	mux.Handle("/", page)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := m.f.GlobalsLoaded(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			if why == "" {
				why = "not read yet"
			}
			fmt.Fprintf(w, "not ready: the site settings (list sizes, exempt senders, mode) have never loaded from the store (%s); only the config file's apply\n", why)
			return
		}
		p, ok := st.(pinger)
		if !ok {
			fmt.Fprintln(w, "ok: memory store")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		err := p.Ping(ctx)
		switch {
		case err == nil:
			fmt.Fprintln(w, "ok: redis reachable")
		case onError == milter.OnErrorAccept:
			fmt.Fprintf(w, "fallback active: redis unreachable (%v); large-audience replies are counted on this node only (store.on_error=accept)\n", err)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: redis unreachable (%v); large-audience replies get 451 4.7.1 (store.on_error=tempfail)\n", err)
		}
	})
	return mux
}

// httpLimits bound what HTTP clients can hold (the http.* keys).
type httpLimits struct {
	maxConns, perClient int           // open connections at most, in all and from one client address
	readHeader, idle    time.Duration // a request header not read whole, a keep-alive idle, this long: closed
}

func httpLimitsOf(cfg *config.Config) httpLimits {
	return httpLimits{maxConns: cfg.HTTP.MaxConnections, perClient: cfg.HTTP.MaxConnectionsPerClient,
		readHeader: cfg.HTTP.ReadHeaderTimeout, idle: cfg.HTTP.IdleTimeout}
}

// startHTTP listens on addr and serves h until stop is called: at most
// lim.maxConns connections open and lim.perClient from one client address
// (beyond either a new one is closed and counted in conns), so that one
// client cannot take the slots /healthz and /metrics need; a connection
// that has not sent its request header within lim.readHeader, or sits
// idle between requests for lim.idle, is closed; accept errors retried.
func startHTTP(addr string, h http.Handler, lim httpLimits, conns *netlimit.Stats, log *slog.Logger) (stop func(), err error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	ln := netlimit.New(raw, "http", lim.maxConns, conns, log).LimitPerClient(lim.perClient)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: lim.readHeader, ReadTimeout: 30 * time.Second, IdleTimeout: lim.idle}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// newAdminHandler is the admin API over api, for requests bearing the
// admin token, which it creates at the first start (http.admin_token_file).
func newAdminHandler(cfg *config.Config, api admin.API, logins *admin.Logins) (http.Handler, error) {
	token, err := admin.EnsureToken(cfg.HTTP.AdminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("http.admin_token_file: %w", err)
	}
	return admin.NewHandler(api, admin.IsLoopback(cfg.HTTP.Listen), token, logins), nil
}

// newReportPage is the report page over api, served where the admin API
// is (it shows subjects and senders): viewing for whoever reaches it, like
// /metrics, and allow / block / reset for an operator logged in with the
// admin token.
func newReportPage(cfg *config.Config, api admin.API, logins *admin.Logins, log *slog.Logger) (http.Handler, error) {
	token, err := admin.EnsureToken(cfg.HTTP.AdminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("http.admin_token_file: %w", err)
	}
	return reportpage.New(reportpage.Config{History: api, Actions: api, Token: token, Loopback: admin.IsLoopback(cfg.HTTP.Listen), Log: log, Logins: logins})
}
