package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/store"
)

// pinger is a store that can say whether it is reachable (Redis).
type pinger interface {
	Ping(ctx context.Context) error
}

// newHTTPHandler serves /metrics, /healthz, /readyz and, under /admin/,
// admin (the admin API, or why it is off).
func newHTTPHandler(m *metrics, st store.Store, onError string, timeout time.Duration, admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
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

// startHTTP listens on addr and serves h until stop is called.
func startHTTP(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
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
