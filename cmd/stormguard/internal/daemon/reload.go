package daemon

import (
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/milter"
)

// Reload: on SIGHUP the daemon reads its configuration again from the
// sources it started with (the file, STORMGUARD_* variables, its flags)
// and validates it as stormguard check does. A configuration that does not
// validate is refused whole: one error line with check's text, and the
// running one stays. Otherwise the keys that can change while milter
// connections stay open (config.Live: the policy, the gate, lists, the
// mode, store.on_error, the log level) are put in force for the next
// message, and each other key that changed is named in a warning and
// keeps its value until a restart.

// reloadable is what serve needs to reload: the loader of the sources it
// started with, and its logger's level.
type reloadable struct {
	load  func() (*config.Config, error)
	level *slog.LevelVar
}

// setLevel sets v to cfg's log.level (validated: one of check's words).
func setLevel(v *slog.LevelVar, cfg *config.Config) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.Log.Level))
	v.Set(l)
}

// reloader applies reloads; only its own goroutine (watchReload) calls
// reload, so running needs no lock.
type reloader struct {
	re      reloadable
	f       *milter.Filter
	log     *slog.Logger
	holds   bool           // the start config holds: the MTA was asked for the quarantine action
	running *config.Config // in force: the live keys as last reloaded, the others as at start
	total   *prometheus.CounterVec
	last    prometheus.Gauge
}

func newReloader(cfg *config.Config, re reloadable, f *milter.Filter, reg *prometheus.Registry, log *slog.Logger) *reloader {
	r := &reloader{re: re, f: f, log: log, holds: cfg.FilterConfig().Holds(), running: cfg,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stormguard_config_reloads_total",
			Help: "Configuration reloads (SIGHUP), by result: ok, or failed (the file did not validate, or named no list while lists were in force; the running configuration stayed).",
		}, []string{"result"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stormguard_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully (at start or by a reload), in Unix seconds.",
		}),
	}
	r.total.WithLabelValues("ok") // present from the start, at 0
	r.total.WithLabelValues("failed")
	r.last.SetToCurrentTime()
	if reg != nil {
		reg.MustRegister(r.total, r.last)
	}
	return r
}

// watchReload reloads on every SIGHUP until the returned stop is called.
func watchReload(r *reloader) (stop func()) {
	hup := make(chan os.Signal, 1) // signals that come while one reload runs make one more
	signal.Notify(hup, syscall.SIGHUP)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				r.reload()
			case <-quit:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(quit); <-done }
}

// reload reads the configuration again and puts in force what it can,
// reporting whether the file was taken.
func (r *reloader) reload() bool {
	next, err := r.re.load()
	if err == nil {
		err = config.CheckReload(r.running, next)
	}
	if err != nil {
		r.total.WithLabelValues("failed").Inc()
		r.log.Error("configuration reload refused; the running configuration stays in force", "err", err)
		return false
	}
	applied, changed, restart := config.Reload(r.running, next)
	var pinned []string
	if !r.holds && applied.FilterConfig().Holds() {
		// A hold needs the quarantine action, which the MTA's
		// connections were not asked for: keep the running actions.
		pinned = []string{"policy.action", "gate.action", "gate.min_audience", "list_policy"}
		applied, changed, restart = config.Reload(r.running, next, pinned...)
	}
	if err := r.f.SetConfig(applied.FilterConfig()); err != nil { // validated by load: not expected
		r.total.WithLabelValues("failed").Inc()
		r.log.Error("configuration reload refused; the running configuration stays in force", "err", err)
		return false
	}
	setLevel(r.re.level, applied)
	r.running = applied
	r.total.WithLabelValues("ok").Inc()
	r.last.SetToCurrentTime()
	for _, k := range restart {
		if slices.Contains(pinned, k) {
			r.log.Warn("config key changed; takes effect at restart", "key", k,
				"why", "action hold needs the milter quarantine action, which the MTA is asked for at start")
			continue
		}
		r.log.Warn("config key changed; takes effect at restart", "key", k)
	}
	p := applied.Policy
	attrs := append([]any{"changed", orNone(changed), "restart_needed", orNone(restart), "min_audience", p.MinAudience},
		limitAttrs(p.Limits)...)
	r.log.Info("configuration reloaded", append(attrs,
		"action", p.Action, "mode", applied.Mode, "lists", len(applied.Lists), "log_level", applied.Log.Level)...)
	return true
}

func orNone(keys []string) string {
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ",")
}
