package daemon

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/netlimit"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// metrics are the daemon's Prometheus metrics, in a registry of their own.
// The milter package knows nothing of Prometheus: it reports through
// milter.Observer (decisions, store calls) and milter.Stats (counters
// read at scrape time).
type metrics struct {
	f         *milter.Filter // for /readyz: have the site settings loaded?
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	storms    prometheus.Counter
	storeDur  *prometheus.HistogramVec
	storeErrs *prometheus.CounterVec
}

func newMetrics(f *milter.Filter, n *events.Notifier, lister store.Lister) *metrics {
	m := &metrics{
		f:   f,
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stormguard_decisions_total",
			Help: "Verdicts given, by action (accept, reject, tempfail, tag) and rule.",
		}, []string{"action", "rule"}),
		storms: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stormguard_storms_detected_total",
			Help: "Replies that crossed a limit (" + limitKeys() + ") and blocked their thread (counted on the node that saw the crossing).",
		}),
		storeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stormguard_store_call_duration_seconds",
			Help:    "Latency of calls to the shared store, by operation (resolve, record).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}, []string{"op"}),
		storeErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stormguard_store_errors_total",
			Help: "Failed calls to the shared store, by operation.",
		}, []string{"op"}),
	}
	for _, op := range []string{"resolve", "record"} { // present from the start, at 0
		m.storeDur.WithLabelValues(op)
		m.storeErrs.WithLabelValues(op)
	}
	counter := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, v)
	}
	st := &f.Stats
	m.reg.MustRegister(
		m.decisions, m.storms, m.storeDur, m.storeErrs,
		counter("stormguard_store_skipped_total", "Messages decided without touching the store (small audience, exempt, mode off).",
			func() float64 { return float64(st.StoreSkipped.Load()) }),
		counter("stormguard_fallbacks_total", "Messages counted in this node's memory store because the shared store failed (store.on_error=accept), under this node's share of what each thread had left.",
			func() float64 { return float64(st.Fallbacks.Load()) }),
		counter("stormguard_store_retries_total", "Messages whose shared store call failed once and was tried again within store.budget.",
			func() float64 { return float64(st.StoreRetries.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stormguard_store_nodes", Help: "Nodes sharing the store, as the last heartbeat counted them: each counts a thread's share 1/N while the store is out of reach.",
		}, func() float64 { return float64(f.Nodes()) }),
		counter("stormguard_panics_total", "Recovered panics in milter callbacks.",
			func() float64 { return float64(st.Panics.Load()) }),
		counter("stormguard_bad_packets_total", "Malformed milter packets refused (connection closed).",
			func() float64 { return float64(st.BadPackets.Load()) }),
		counter("stormguard_globals_errors_total", "Failed refreshes of list sizes, exempt senders and mode from the store.",
			func() float64 { return float64(st.GlobalsErrors.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stormguard_mode_monitor", Help: "1 while the site mode is monitor (refusals become a header).",
		}, func() float64 { return b2f(f.Mode() == policy.ModeMonitor) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stormguard_mode_off", Help: "1 while the site mode is off (nothing is counted or refused).",
		}, func() float64 { return b2f(f.Mode() == policy.ModeOff) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stormguard_globals_loaded", Help: "1 once list sizes, exempt senders and mode have been read from the store (until then only the config file's apply, and /readyz says not ready).",
		}, func() float64 { ok, _ := f.GlobalsLoaded(); return b2f(ok) }),
		&invalidCollector{f: f, desc: prometheus.NewDesc("stormguard_globals_invalid",
			"Values in a site-settings key (the lists hash, the exempt set, the mode) left out or capped by the last refresh, by key; each is logged as \"bad site setting in the store\".",
			[]string{"key"}, nil)},
		newEventCollector(n),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if bc, ok := lister.(store.BlockCounter); ok {
		m.reg.MustRegister(newBlockedCollector(bc, 10*time.Second, time.Second))
	}
	if mem, ok := lister.(*store.Memory); ok {
		m.reg.MustRegister(counter("stormguard_memory_evictions_total",
			"Threads the memory store evicted, least recently active first, to stay within store.memory_max_threads and store.memory_max_bytes.",
			func() float64 { return float64(mem.Evictions()) }))
	}
	return m
}

// limitKeys names the limit rules, "max_replies or delivery_budget".
func limitKeys() string {
	keys := make([]string, len(policy.LimitRules))
	for i, r := range policy.LimitRules {
		keys[i] = r.Key
	}
	if len(keys) < 2 {
		return strings.Join(keys, "")
	}
	return strings.Join(keys[:len(keys)-1], ", ") + " or " + keys[len(keys)-1]
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// eventCollector reports the notifier's outlets.
type eventCollector struct {
	n    *events.Notifier
	desc *prometheus.Desc
}

func newEventCollector(n *events.Notifier) *eventCollector {
	return &eventCollector{n: n, desc: prometheus.NewDesc("stormguard_events_total",
		"Events by outlet (queue, redis or log, webhook, mail) and result (sent, failed after retries, dropped because the queue was full; mail also rate_limited by notify.max_per_hour, duplicate: the thread had its notice).",
		[]string{"outlet", "result"}, nil)}
}

func (c *eventCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *eventCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Dropped), "queue", "dropped")
	for _, o := range s.Outlets {
		for result, v := range map[string]uint64{"sent": o.Sent, "failed": o.Failed, "dropped": o.Dropped} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), o.Name, result)
		}
		if o.Name == "mail" {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(o.Limited), o.Name, "rate_limited")
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(o.Duplicate), o.Name, "duplicate")
		}
	}
}

// connCollector reports the listeners' connections: open, refused beyond
// their limit (milter.max_sessions, http.max_connections), accept errors.
type connCollector struct {
	stats                 map[string]*netlimit.Stats // by listener: milter, http
	open, refused, accErr *prometheus.Desc
}

func newConnCollector(stats map[string]*netlimit.Stats) *connCollector {
	l := []string{"listener"}
	return &connCollector{stats: stats,
		open: prometheus.NewDesc("stormguard_connections_open",
			"Open connections, by listener (milter, http).", l, nil),
		refused: prometheus.NewDesc("stormguard_connections_refused_total",
			"New connections closed at once because milter.max_sessions or http.max_connections were open, by listener.", l, nil),
		accErr: prometheus.NewDesc("stormguard_accept_errors_total",
			"Failed accepts retried with backoff (out of file descriptors and the like), by listener.", l, nil)}
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.refused
	ch <- c.accErr
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	for name, s := range c.stats {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.Open.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(s.Refused.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.accErr, prometheus.CounterValue, float64(s.AcceptErrors.Load()), name)
	}
}

// blockedCollector is the active-blocked-threads gauge. It asks the
// store's count of blocked threads (store.BlockCounter: an index kept as
// blocks are set, never a scan of threads) at most once per maxAge; a
// failed count reports the last value.
type blockedCollector struct {
	counter store.BlockCounter
	maxAge  time.Duration
	timeout time.Duration
	desc    *prometheus.Desc

	mu      sync.Mutex
	at      time.Time
	blocked float64
}

func newBlockedCollector(c store.BlockCounter, maxAge, timeout time.Duration) *blockedCollector {
	return &blockedCollector{counter: c, maxAge: maxAge, timeout: timeout,
		desc: prometheus.NewDesc("stormguard_blocked_threads",
			"Threads currently blocked (by a storm or an operator's block override, and no allow override; at most "+
				strconv.Itoa(store.MaxBlockedCount)+" counted); refreshed at most every 10s.",
			nil, nil)}
}

func (c *blockedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *blockedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.at) >= c.maxAge {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		n, err := c.counter.Blocked(ctx, now)
		cancel()
		if err == nil {
			c.blocked, c.at = float64(n), now
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, c.blocked)
}

// historyCollectors report the history recorder's counters.
func historyCollectors(r *history.Recorder) []prometheus.Collector {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("stormguard_history_notes_dropped_total", "Decisions the history recorder dropped because its queue was full: their queue ids or history updates are missing.", &r.Stats.Dropped),
		counter("stormguard_history_write_errors_total", "Failed writes of queue ids or history entries to the store (each logged, rate-limited).", &r.Stats.WriteErrors),
		counter("stormguard_history_entries_saved_total", "History entries (storms and near misses) written.", &r.Stats.Saved),
		counter("stormguard_history_queue_ids_total", "Queue ids of messages let through or held in large-audience threads written to the store.", &r.Stats.Queued),
	}
}

// invalidCollector reports the bad site-setting values the last refresh
// found, by key.
type invalidCollector struct {
	f    *milter.Filter
	desc *prometheus.Desc
}

func (c *invalidCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *invalidCollector) Collect(ch chan<- prometheus.Metric) {
	for key, n := range c.f.GlobalsInvalid() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), key)
	}
}
