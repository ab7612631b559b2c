package identity

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Latency at end of headers: open loop, rate messages a second due over
// conns milter connections (each carrying perConn messages, then a new
// one), the Mix of storm-shaped mail. A stormguard target is two nodes of
// one revision sharing one Redis (or Cluster); the connections alternate
// between them, so a reply often answers a message the other node
// recorded. The no-op milter, two processes likewise, is the baseline:
// what stormguard adds is its p99 minus the no-op's in the same round.

// target is what one run loads.
type target struct {
	name    string   // noop, before, after
	addrs   []string // milter addresses, connections alternate
	daemons []*daemon
	redis   []string // its redis-servers, for their CPU
}

// loadOpts shape one run.
type loadOpts struct {
	rate     float64
	duration time.Duration
	conns    int
	perConn  int
}

// runResult is one measured run of one target.
type runResult struct {
	target   string
	msgs     int
	elapsed  time.Duration
	lat      []time.Duration
	classLat [NumClasses][]time.Duration
	wait     []time.Duration // from each message's due time to its start
	backlog  int             // due in the run, never started
	verdicts map[string]int
	errs     int
	firstErr error
	daemon   time.Duration // CPU of the target's daemons
	redis    time.Duration // CPU of its redis-servers
	warnings int           // warnings and errors its daemons logged (store timeouts: fallbacks)
}

func (r runResult) achieved() float64 { return float64(r.msgs) / r.elapsed.Seconds() }

func (r runResult) keptUp(o loadOpts) bool {
	return r.achieved() >= 0.95*o.rate && quantile(r.wait, 0.99) < 10*time.Millisecond &&
		float64(r.backlog) <= max(1, o.rate/100)
}

func (r runResult) perMsg(d time.Duration) float64 {
	if r.msgs == 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond) / float64(r.msgs)
}

// quantile of a sample (nearest rank); 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// startNoop runs the no-op baseline as two processes, like a target's two
// nodes.
func startNoop(t testing.TB) *target {
	tg := &target{name: "noop"}
	for _, n := range []string{"noop-A", "noop-B"} {
		d := startNoopProcess(t, n)
		tg.daemons = append(tg.daemons, d)
		tg.addrs = append(tg.addrs, d.addr)
	}
	return tg
}

// startNodes runs two nodes of bin on a fresh Redis (or Cluster).
func startNodes(t testing.TB, name, bin string, cluster bool) *target {
	rs := startRedisSet(t, cluster, nil)
	tg := &target{name: name, redis: rs.servers}
	for _, n := range []string{"A", "B"} {
		d := startDaemon(t, bin, n, rs, cluster, nil, 0)
		tg.daemons = append(tg.daemons, d)
		tg.addrs = append(tg.addrs, d.addr)
	}
	return tg
}

// errBudget: a run with more failed messages than this stops.
const errBudget = 100

// drive runs one open-loop run against tg.
func drive(t testing.TB, tg *target, o loadOpts) runResult {
	mix := NewMix()
	res := runResult{target: tg.name, verdicts: map[string]int{}}
	var (
		seq  atomic.Uint64
		stop atomic.Bool
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	cpu0 := tg.cpu(t)
	redis0 := redisCPU(t, tg.redis)
	warn0 := tg.warnings()
	start := time.Now()
	// claim returns the next message's number at its due time, or false
	// when the run is over.
	claim := func() (uint64, time.Duration, bool) {
		if stop.Load() {
			return 0, 0, false
		}
		n := seq.Add(1)
		due := time.Duration(float64(n-1) / o.rate * float64(time.Second))
		if due >= o.duration {
			return 0, 0, false
		}
		if d := time.Until(start.Add(due)); d > 0 {
			time.Sleep(d) // the message is due then: the load's own schedule
		}
		return n, time.Since(start.Add(due)), true
	}
	for w := range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			var (
				lat      [NumClasses][]time.Duration
				waits    []time.Duration
				verdicts = map[string]int{}
				errs     int
				first    error
			)
			defer func() {
				mu.Lock()
				for c := range lat {
					res.lat = append(res.lat, lat[c]...)
					res.classLat[c] = append(res.classLat[c], lat[c]...)
				}
				res.wait = append(res.wait, waits...)
				for k, v := range verdicts {
					res.verdicts[k] += v
				}
				res.errs += errs
				if res.firstErr == nil {
					res.firstErr = first
				}
				mu.Unlock()
			}()
			s := newSession(tg.addrs[w%len(tg.addrs)])
			defer s.close()
			for sent := 0; ; sent++ {
				n, late, ok := claim()
				if !ok {
					return
				}
				waits = append(waits, late)
				if sent%o.perConn == 0 { // an MTA connection carries perConn messages
					s.close()
				}
				m, done := mix.Next(rng, n)
				s.queueID(fmt.Sprintf("Q%X", n))
				v, took, err := s.send(m)
				if err != nil {
					errs++
					if first == nil {
						first = fmt.Errorf("message %d (%s): %w", n, m.Class, err)
					}
					if errs > errBudget/o.conns+1 {
						stop.Store(true)
					}
					continue
				}
				lat[m.Class] = append(lat[m.Class], took)
				verdicts[v]++
				done(delivered(v))
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.msgs = len(res.lat)
	due := int(o.duration.Seconds()*o.rate + 0.999999)
	res.backlog = max(0, due-len(res.wait))
	res.daemon = tg.cpu(t) - cpu0
	res.redis = redisCPU(t, tg.redis) - redis0
	res.warnings = tg.warnings() - warn0
	return res
}

// cpu is the CPU the target's processes have used.
func (tg *target) cpu(t testing.TB) time.Duration {
	var sum time.Duration
	for _, d := range tg.daemons {
		sum += processCPU(t, d.pid)
	}
	return sum
}

// warnings counts the warnings and errors the target's daemons logged.
func (tg *target) warnings() int {
	n := 0
	for _, d := range tg.daemons {
		n += len(d.log.Problems())
	}
	return n
}

// errNoMessages: a run measured nothing.
var errNoMessages = errors.New("no message measured")

// check returns the first thing wrong with a run: failed messages,
// tempfails (a store error), or nothing measured.
func (r runResult) check() error {
	switch {
	case r.errs > 0:
		return fmt.Errorf("%s: %d failed messages, first: %w", r.target, r.errs, r.firstErr)
	case r.verdicts["tempfail"] > 0:
		return fmt.Errorf("%s: %d tempfails (store errors?)", r.target, r.verdicts["tempfail"])
	case r.msgs == 0:
		return fmt.Errorf("%s: %w", r.target, errNoMessages)
	}
	return nil
}
