// Command driver loads milters over the milter protocol like an MTA does
// (go-milter's client: N concurrent connections, several messages each, a
// realistic mix of small mail, small replies and large-audience reply-alls)
// and reports messages/s and the latency from end of headers to the verdict,
// overall and per message class.
//
// Two load shapes. Closed loop (throughput): every connection sends its next
// message as soon as the previous one has its verdict, so the machine is
// saturated and latency there is mostly run-queue waiting. Open loop (-rate
// N, latency): messages are due at a fixed rate, N per second spread over
// the same connections, each at its time whether or not earlier ones have
// finished (a message due while every connection is busy waits, as at an
// MTA, and the report shows that wait and the backlog: a target that cannot
// keep up shows it there). The default run does both: throughput closed
// loop, then latency at 1000 msg/s.
//
// It starts its targets in-process (the no-op baseline, stormguard with
// the memory store, stormguard with Redis against a redis-server it starts)
// and runs them interleaved in one invocation, so the ratios compare like
// with like; or it drives an external milter (-addr, with -pid for RSS).
//
//	go run ./bench/driver                          # noop, memory, redis: closed loop, then -rate 1000
//	go run ./bench/driver -closed=false -rate 500,1000,2000
//	go run ./bench/driver -addr 127.0.0.1:7357 -pid 1234 -messages 1000000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/bench/miltermsg"
)

// options of one invocation.
type options struct {
	targets  []string // in-process targets: noop, memory, redis
	addr     string   // external milter host:port (target "external")
	pid      int      // process whose RSS to report for the external target
	redis    string   // Redis for the redis target; "": start one
	conns    int
	perConn  int // messages per milter connection
	duration time.Duration
	messages uint64 // total messages per run instead of duration, 0: use duration
	warmup   time.Duration
	rounds   int
	threads  int
	profile  string    // CPU profile of the measured runs
	closed   bool      // run the closed-loop (throughput) phase
	rates    []float64 // open-loop (latency) phases, messages/s
}

// defaultRate is the open-loop rate of the default run: well above one
// node's realistic peak (a national site's whole load, 3-5 million
// messages a day, averages 35-60 msg/s), low enough that two shared cores
// are not saturated, so latency measures the milter, not the run queue.
const defaultRate = 1000

func main() {
	var o options
	var targets string
	flag.StringVar(&targets, "targets", "noop,memory,redis", "in-process targets, comma separated: noop, memory, redis (ignored with -addr)")
	flag.StringVar(&o.addr, "addr", "", "drive an external milter at host:port instead")
	flag.IntVar(&o.pid, "pid", 0, "process id of the external milter, for its RSS")
	flag.StringVar(&o.redis, "redis", "", "Redis host:port for the redis target (default: start a private redis-server)")
	flag.IntVar(&o.conns, "conns", 16, "concurrent milter connections")
	flag.IntVar(&o.perConn, "per-conn", 10, "messages per milter connection")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measured run")
	flag.Uint64Var(&o.messages, "messages", 0, "messages per run (overrides -duration)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured run per target before the rounds")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved measured runs per target; the median is reported")
	flag.IntVar(&o.threads, "threads", 4, "large-audience threads the reply-alls go to")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the measured runs (driver and in-process targets) to this file")
	flag.BoolVar(&o.closed, "closed", true, "run the closed-loop phase: every connection sends as fast as it can (throughput)")
	rates := flag.String("rate", strconv.Itoa(defaultRate), "open-loop phases: messages/s due over the -conns connections, comma separated; 0: none (default with -messages)")
	smoke := flag.Bool("smoke", false, "short run (~3 s) as in CI")
	flag.Parse()
	o.targets = strings.Split(targets, ",")
	rateSet := false
	flag.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
	if o.messages > 0 && !rateSet {
		*rates = "0" // a long run by count (RSS): throughput only, unless asked
	}
	var err error
	if o.rates, err = parseRates(*rates); err != nil {
		fmt.Fprintln(os.Stderr, "driver: -rate:", err)
		os.Exit(2)
	}
	if *smoke {
		o = smokeOptions(o)
	}
	if _, err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		os.Exit(1)
	}
}

func parseRates(s string) ([]float64, error) {
	var rates []float64
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r < 0 {
			return nil, fmt.Errorf("%q: want messages/s >= 0", f)
		}
		if r > 0 {
			rates = append(rates, r)
		}
	}
	return rates, nil
}

// smokeOptions shrinks a run to a few seconds: both phases, short.
func smokeOptions(o options) options {
	o.duration, o.warmup, o.rounds, o.conns, o.perConn = 400*time.Millisecond, 100*time.Millisecond, 1, 4, 5
	if len(o.rates) == 0 {
		o.rates = []float64{defaultRate}
	}
	o.closed = true
	return o
}

// result is one measured run of one target.
type result struct {
	target   string
	rate     float64 // offered (open loop); 0: closed loop
	msgs     uint64
	elapsed  time.Duration
	lat      *hist
	classLat [numClasses]*hist
	wait     *hist             // open loop: from a message's due time to its start
	backlog  uint64            // open loop: messages due in the run but never started
	verdicts map[string]uint64 // accept, reject, tempfail, continue
	classes  [numClasses]uint64
	errs     uint64
	rssStart int64
	rssEnd   int64
}

func (r result) achieved() float64 { return float64(r.msgs) / r.elapsed.Seconds() }

func newResult(target string, rate float64) result {
	r := result{target: target, rate: rate, lat: newHist(), wait: newHist(), verdicts: map[string]uint64{}}
	for c := range r.classLat {
		r.classLat[c] = newHist()
	}
	return r
}

// summary is what a target scored over all rounds of one phase.
type summary struct {
	target   string
	rate     float64 // offered (open loop); 0: closed loop
	rates    []float64
	median   float64 // achieved msg/s, median over the rounds
	lat      *hist
	classLat [numClasses]*hist
	wait     *hist
	backlog  uint64 // the largest end-of-run backlog of any round
	verdicts map[string]uint64
	classes  [numClasses]uint64
	errs     uint64
	rssStart int64
	rssEnd   int64
}

// run starts the targets, runs the rounds and prints the report to w.
func run(ctx context.Context, o options, w io.Writer) ([]summary, error) {
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.stop()
		}
	}()
	if o.addr != "" {
		targets = append(targets, &target{name: "external", addr: o.addr, pid: o.pid, stop: func() {}})
	} else {
		for _, name := range o.targets {
			var t *target
			var err error
			switch strings.TrimSpace(name) {
			case "noop":
				t, err = startNoop()
			case "memory":
				t, err = startStormguard("memory", "")
			case "redis":
				addr := o.redis
				if addr == "" {
					var stop func()
					addr, stop, err = startRedis()
					if err != nil {
						return nil, err
					}
					targets = append(targets, &target{name: "redis-server", stop: stop})
				}
				t, err = startStormguard("redis", addr)
			default:
				err = fmt.Errorf("unknown target %q (noop, memory, redis)", name)
			}
			if err != nil {
				return nil, err
			}
			targets = append(targets, t)
		}
	}
	var live []*target
	for _, t := range targets {
		if t.addr != "" {
			live = append(live, t)
		}
	}
	slices.Reverse(targets) // stop the milters before the redis-server

	fmt.Fprintf(w, "driver: %d connections, %d messages each, %s, %d rounds, mix 90%% small new / 5%% small reply / 4%% large reply-all (References) / 1%% large reply (In-Reply-To only) to %d threads\n",
		o.conns, o.perConn, runLength(o), o.rounds, o.threads)
	if o.warmup > 0 && o.messages == 0 {
		for _, t := range live {
			wo := o
			wo.duration = o.warmup
			if _, err := drive(ctx, t, wo, 0); err != nil {
				return nil, fmt.Errorf("%s warm-up: %w", t.name, err)
			}
		}
	}
	if o.profile != "" {
		f, err := os.Create(o.profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	var phases []float64
	if o.closed {
		phases = append(phases, 0)
	}
	phases = append(phases, o.rates...)
	var all []summary
	for _, rate := range phases {
		sums, err := phase(ctx, o, live, rate, w)
		if err != nil {
			return nil, err
		}
		all = append(all, sums...)
	}
	return all, nil
}

// phase runs the interleaved rounds of one load shape (rate 0: closed loop)
// and prints its report.
func phase(ctx context.Context, o options, live []*target, rate float64, w io.Writer) ([]summary, error) {
	fmt.Fprintf(w, "\n%s\n", phaseTitle(rate, o.conns))
	sums := make([]summary, len(live))
	for i, t := range live {
		r := newResult(t.name, rate)
		sums[i] = summary{target: t.name, rate: rate, lat: r.lat, classLat: r.classLat, wait: r.wait, verdicts: r.verdicts}
	}
	for round := range o.rounds {
		for k := range live { // rotate the order: no target always goes first
			i := (k + round) % len(live)
			r, err := drive(ctx, live[i], o, rate)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", live[i].name, round+1, err)
			}
			fmt.Fprintf(w, "  round %d %-8s %8.0f msg/s  p50 %s  p99 %s  p99.9 %s%s  errors %d%s\n",
				round+1, r.target, r.achieved(), fmtDur(r.lat.quantile(0.5)), fmtDur(r.lat.quantile(0.99)), fmtDur(r.lat.quantile(0.999)), openNote(r), r.errs, rssNote(r))
			s := &sums[i]
			s.rates = append(s.rates, r.achieved())
			s.lat.merge(r.lat)
			for c := range r.classLat {
				s.classLat[c].merge(r.classLat[c])
			}
			s.wait.merge(r.wait)
			s.backlog = max(s.backlog, r.backlog)
			for k, v := range r.verdicts {
				s.verdicts[k] += v
			}
			for c := range r.classes {
				s.classes[c] += r.classes[c]
			}
			s.errs += r.errs
			if s.rssStart == 0 {
				s.rssStart = r.rssStart
			}
			s.rssEnd = r.rssEnd
		}
	}
	for i := range sums {
		sorted := slices.Clone(sums[i].rates)
		slices.Sort(sorted)
		sums[i].median = sorted[len(sorted)/2]
	}
	report(w, sums)
	return sums, nil
}

func phaseTitle(rate float64, conns int) string {
	if rate == 0 {
		return fmt.Sprintf("closed loop (throughput): %d connections, each sends its next message on the verdict", conns)
	}
	return fmt.Sprintf("open loop (latency): %.0f msg/s due over %d connections, each at its time", rate, conns)
}

func runLength(o options) string {
	if o.messages > 0 {
		return fmt.Sprintf("%d messages per run", o.messages)
	}
	return fmt.Sprintf("%v per run", o.duration)
}

func rssNote(r result) string {
	if r.rssStart == 0 {
		return ""
	}
	return fmt.Sprintf("  RSS %.1f -> %.1f MiB", float64(r.rssStart)/(1<<20), float64(r.rssEnd)/(1<<20))
}

func openNote(r result) string {
	if r.rate == 0 {
		return ""
	}
	return fmt.Sprintf("  wait p99 %s max %s  backlog %d", fmtDur(r.wait.quantile(0.99)), fmtDur(r.wait.max), r.backlog)
}

// keptUp: an open-loop phase where the target served at least 95 % of the
// offered rate, started 99 % of the messages within 10 ms of their time and
// never ended a run with more than 10 ms' worth of due messages unstarted.
func (s summary) keptUp() bool {
	return s.median >= 0.95*s.rate && s.wait.quantile(0.99) < 10*time.Millisecond &&
		float64(s.backlog) <= max(1, s.rate/100)
}

// classGroups are the rows of the per-class table: small mail (new and
// replies, never reach the store), large-audience replies with References,
// with In-Reply-To only.
var classGroups = []struct {
	name    string
	classes []class
}{
	{"small (new + replies, 95 %)", []class{classSmallNew, classSmallReply}},
	{"large reply, References (4 %)", []class{classLargeRefs}},
	{"large reply, In-Reply-To only (1 %)", []class{classLargeNoRefs}},
}

func groupHist(s summary, cs []class) *hist {
	h := newHist()
	for _, c := range cs {
		h.merge(s.classLat[c])
	}
	return h
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d/time.Microsecond)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

func fmtAdded(d, base time.Duration) string {
	x := float64(d-base) / float64(time.Millisecond)
	return fmt.Sprintf("%+.2f ms", x)
}

// report prints the markdown tables of one phase: rate and overall latency
// with the ratios against noop, then latency per message class.
func report(w io.Writer, sums []summary) {
	var noop *summary
	for i := range sums {
		if sums[i].target == "noop" {
			noop = &sums[i]
		}
	}
	open := len(sums) > 0 && sums[0].rate > 0
	fmt.Fprintln(w)
	if open {
		fmt.Fprintln(w, "| target | offered msg/s | achieved (median) | kept up | wait p99 / max | backlog | p50 | p99 | p99.9 | p99 − noop p99 | verdicts | errors |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	} else {
		fmt.Fprintln(w, "| target | msg/s (median) | × noop | p50 | p99 | p99.9 | p99 − noop p99 | verdicts | errors |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	}
	for _, s := range sums {
		ratio, added := "–", "–"
		if noop != nil {
			ratio = fmt.Sprintf("%.3f", s.median/noop.median)
			if s.target != "noop" {
				added = fmtAdded(s.lat.quantile(0.99), noop.lat.quantile(0.99))
			}
		}
		var vs []string
		for _, k := range []string{"accept", "reject", "tempfail", "continue"} {
			if n := s.verdicts[k]; n > 0 {
				vs = append(vs, fmt.Sprintf("%s %d", k, n))
			}
		}
		lat := fmt.Sprintf("%s | %s | %s | %s", fmtDur(s.lat.quantile(0.5)), fmtDur(s.lat.quantile(0.99)), fmtDur(s.lat.quantile(0.999)), added)
		if open {
			kept := "yes"
			if !s.keptUp() {
				kept = "**no**"
			}
			fmt.Fprintf(w, "| %s | %.0f | %.0f | %s | %s / %s | %d | %s | %s | %d |\n", s.target, s.rate, s.median, kept,
				fmtDur(s.wait.quantile(0.99)), fmtDur(s.wait.max), s.backlog, lat, strings.Join(vs, ", "), s.errs)
		} else {
			fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d |\n", s.target, s.median, ratio, lat, strings.Join(vs, ", "), s.errs)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | class | messages | p50 | p99 | p99.9 | p99 − noop p99 (same class) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, s := range sums {
		for _, g := range classGroups {
			h := groupHist(s, g.classes)
			added := "–"
			if noop != nil && s.target != "noop" {
				added = fmtAdded(h.quantile(0.99), groupHist(*noop, g.classes).quantile(0.99))
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", s.target, g.name, h.n,
				fmtDur(h.quantile(0.5)), fmtDur(h.quantile(0.99)), fmtDur(h.quantile(0.999)), added)
		}
	}
	for _, s := range sums {
		if s.rssStart > 0 {
			fmt.Fprintf(w, "\nRSS of %s: %.1f MiB at the start, %.1f MiB at the end\n", s.target,
				float64(s.rssStart)/(1<<20), float64(s.rssEnd)/(1<<20))
		}
	}
}

// errBudget: a run with more failed messages than this stops.
const errBudget = 100

// drive runs one measured run against t: o.conns workers, each opening a
// milter connection, sending o.perConn messages and closing it, until the
// duration or the message count is reached. rate 0: closed loop, each
// worker sends its next message at once; rate > 0: open loop, message n is
// due at n/rate seconds into the run and the next free worker takes it (at
// once if it is already late: the wait is recorded).
func drive(ctx context.Context, t *target, o options, rate float64) (result, error) {
	wl := newWorkload(o.threads)
	var (
		seq    atomic.Uint64 // messages claimed
		errs   atomic.Uint64
		stop   atomic.Bool
		mu     sync.Mutex
		wg     sync.WaitGroup
		res    = newResult(t.name, rate)
		first  error
		client = gomilter.NewClient("tcp", t.addr)
	)
	if t.pid > 0 {
		res.rssStart = rss(t.pid)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.messages == 0 {
		go func() {
			select {
			case <-time.After(o.duration):
			case <-ctx.Done():
			}
			stop.Store(true)
		}()
	}
	var start time.Time
	// claim reports whether another message may be sent, and its number;
	// in open loop it returns at the message's due time.
	claim := func() (uint64, bool) {
		if stop.Load() {
			return 0, false
		}
		n := seq.Add(1)
		if o.messages > 0 && n > o.messages {
			return 0, false
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(n-1) / rate * float64(time.Second)))
			if o.messages == 0 && due.Sub(start) >= o.duration {
				return 0, false
			}
			if d := time.Until(due); d > 0 {
				tm := time.NewTimer(d)
				select {
				case <-tm.C:
				case <-ctx.Done():
					tm.Stop()
					return 0, false
				}
			}
			late := time.Since(due)
			if stop.Load() {
				return 0, false
			}
			mu.Lock()
			res.wait.add(late)
			mu.Unlock()
		}
		return n, true
	}
	var progress func(uint64)
	if o.messages >= 100000 && t.pid > 0 {
		progress = func(n uint64) {
			if n%(o.messages/10) == 0 {
				fmt.Fprintf(os.Stderr, "  %s: %d messages, RSS %.1f MiB\n", t.name, n, float64(rss(t.pid))/(1<<20))
			}
		}
	}
	start = time.Now()
	for w := range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			var lat [numClasses]*hist
			for c := range lat {
				lat[c] = newHist()
			}
			verdicts := map[string]uint64{}
			var classes [numClasses]uint64
			defer func() {
				mu.Lock()
				for c := range lat {
					res.lat.merge(lat[c])
					res.classLat[c].merge(lat[c])
				}
				for k, v := range verdicts {
					res.verdicts[k] += v
				}
				for c := range classes {
					res.classes[c] += classes[c]
				}
				mu.Unlock()
			}()
			for !stop.Load() {
				err := connection(client, wl, rng, o.perConn, claim, &lat, verdicts, &classes, progress)
				if errors.Is(err, errDone) {
					return
				}
				if err != nil {
					if errs.Add(1) > errBudget {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
						stop.Store(true)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if rate > 0 && o.messages == 0 {
		// Due within the run but never started (every connection was busy).
		due := uint64(o.duration.Seconds()*rate + 0.999999)
		res.backlog = due - min(due, res.wait.n)
	}
	res.msgs = res.lat.n
	res.errs = errs.Load()
	if t.pid > 0 {
		res.rssEnd = rss(t.pid)
	}
	if first != nil {
		return res, fmt.Errorf("more than %d errors, first: %w", errBudget, first)
	}
	return res, nil
}

// errDone: the run is over.
var errDone = errors.New("done")

// connection is one MTA-to-milter connection carrying up to n messages.
func connection(client *gomilter.Client, wl *workload, rng *rand.Rand, n int, claim func() (uint64, bool),
	lat *[numClasses]*hist, verdicts map[string]uint64, classes *[numClasses]uint64, progress func(uint64)) error {
	seq, ok := claim()
	if !ok {
		return errDone
	}
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroMTAFQDN, "mx.bench.example")
	macros.Set(gomilter.MacroDaemonName, "smtpd")
	s, err := client.Session(macros)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Conn("client.bench.example", gomilter.FamilyInet, 25000, "192.0.2.1"); err != nil {
		return err
	}
	if _, err := s.Helo("client.bench.example"); err != nil {
		return err
	}
	for i := 0; ; i++ {
		c := pick(rng)
		m := wl.next(rng, c, seq)
		macros.Set(gomilter.MacroQueueId, fmt.Sprintf("Q%X", seq))
		verdict, took, err := miltermsg.Send(s, m.from, m.rcpts, m.headers)
		if err != nil {
			return fmt.Errorf("message %d (%s): %w", seq, classNames[c], err)
		}
		lat[c].add(took)
		verdicts[verdict]++
		classes[c]++
		if progress != nil {
			progress(seq)
		}
		if i+1 >= n {
			return nil
		}
		if seq, ok = claim(); !ok {
			return errDone
		}
	}
}
