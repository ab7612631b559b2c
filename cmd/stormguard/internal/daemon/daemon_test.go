package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/store"
)

// newTestFilter is the configuration's defaults (memory store), the
// store, a filter on them and its metrics.
func newTestFilter(t *testing.T) (*config.Config, store.Store, *milter.Filter, *metrics) {
	t.Helper()
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _, err := openStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	f, err := milter.NewFilter(cfg.FilterConfig(), st, nil, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNotifier(cfg, st, log, "stormguard/test", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return cfg, st, f, newMetrics(f, n, nil)
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

// /readyz says not ready until the site settings have loaded from the
// store; /healthz is ok throughout; /metrics shows the same.
func TestReadyzWaitsForSiteSettings(t *testing.T) {
	cfg, st, f, met := newTestFilter(t)
	h := newHTTPHandler(met, st, cfg.Store.OnError, time.Second, http.NotFoundHandler(), http.NotFoundHandler())
	if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: the site settings") {
		t.Errorf("/readyz before the site settings load: %d %q", code, body)
	}
	if _, body := get(t, h, "/metrics"); !strings.Contains(body, "stormguard_globals_loaded 0") {
		t.Errorf("/metrics before the site settings load lacks stormguard_globals_loaded 0:\n%s", body)
	}
	if err := f.RefreshGlobals(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, h, "/readyz"); code != 200 || body != "ok: memory store\n" {
		t.Errorf("/readyz after: %d %q", code, body)
	}
	if _, body := get(t, h, "/metrics"); !strings.Contains(body, "stormguard_globals_loaded 1") {
		t.Errorf("/metrics after lacks stormguard_globals_loaded 1")
	}
}

// A reload that cannot load is refused whole and counted as failed; one
// that loads puts the live keys (here log.level) in force.
func TestReloadRefusesOrApplies(t *testing.T) {
	cfg, _, f, _ := newTestFilter(t)
	level := new(slog.LevelVar)
	setLevel(level, cfg)
	var next *config.Config
	var loadErr error
	reg := prometheus.NewRegistry()
	r := newReloader(cfg, reloadable{load: func() (*config.Config, error) { return next, loadErr }, level: level},
		f, reg, slog.New(slog.DiscardHandler))
	reloads := func(result string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "stormguard_config_reloads_total" && m.GetLabel()[0].GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no stormguard_config_reloads_total{result=%q}", result)
		return 0
	}

	loadErr = errors.New("policy.max_replies: not a number")
	if r.reload() {
		t.Error("a config that does not load was taken")
	}
	if got := reloads("failed"); got != 1 {
		t.Errorf("failed reloads: %v, want 1", got)
	}

	c := *cfg
	c.Log.Level = "debug"
	next, loadErr = &c, nil
	if level.Level() == slog.LevelDebug {
		t.Fatal("the default level is already debug")
	}
	if !r.reload() {
		t.Fatal("a valid config was refused")
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level after the reload: %v, want debug", level.Level())
	}
	if ok, failed := reloads("ok"), reloads("failed"); ok != 1 || failed != 1 {
		t.Errorf("reloads: %v ok, %v failed; want 1 and 1", ok, failed)
	}
}
