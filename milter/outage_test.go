package milter

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Redis taken away under load: killed (SIGKILL) or frozen (SIGSTOP), or
// its master failing over (failover_test.go). Every message must get its
// configured answer within store.budget (a call and its retry) plus a
// small margin, the daemons stay up, and they use Redis again by
// themselves once it is back.

const (
	outageTimeout = 200 * time.Millisecond // redis.timeout, the default
	outageBudget  = 500 * time.Millisecond // store.budget, the default
	// outageMargin is what a decision may take beyond store.budget: the
	// milter round trip, the fallback count, scheduling of 16 sessions
	// and 2 daemons on a small machine under -race.
	outageMargin  = 300 * time.Millisecond
	outageWorkers = 16 // concurrent MTA sessions
)

// go-redis logs every failed dial; the tests count failures themselves.
func init() { redis.SetLogger(quietLogger{}) }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// usesRedis waits until every node records in the Redis at addr: a reply
// sent through the node leaves its thread's meta hash there. With a
// Cluster, serves picks the probe threads addr serves (nil: any thread).
// It returns how long that took.
func usesRedis(t *testing.T, ns []node, addr string, serves func(key string) bool, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for k, n := range ns {
		poll(t, timeout, fmt.Sprintf("node %d records in Redis %s again", k, addr), func() bool {
			var root, key string
			for key == "" || serves != nil && !serves(key) {
				root = "probe-" + uniq() + "@example.org"
				key = store.NewKeys("").Meta(policy.MessageIDKey(root).Thread())
			}
			m := replyAll(k, root)
			m.headers[3] = [2]string{"Message-ID", " <probe-" + uniq() + "@example.org>"}
			if o := deliver(n.addr, m, 5*time.Second); o.err != nil {
				return false
			}
			got, err := redisenv.CLIErr(addr, "EXISTS", key)
			return err == nil && got == "1"
		})
	}
	return time.Since(start)
}

// sent is one message of a load run.
type sent struct {
	i          int // the message's number, as next got it
	start, end time.Time
	outcome
}

// load sends messages from workers concurrent sessions, message i through
// node i%len(ns), until stopped.
type load struct {
	mu   sync.Mutex
	msgs []sent
	n    atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(ns []node, workers int, next func(i int) mail) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				i := int(l.n.Add(1))
				start := time.Now()
				o := deliver(ns[i%len(ns)].addr, next(i), 5*time.Second)
				l.mu.Lock()
				l.msgs = append(l.msgs, sent{i: i, start: start, end: time.Now(), outcome: o})
				l.mu.Unlock()
			}
		})
	}
	return l
}

// waitSent waits until at least n more messages have been answered.
func (l *load) waitSent(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	target := len(l.msgs) + n
	l.mu.Unlock()
	poll(t, 20*time.Second, fmt.Sprintf("%d more messages answered", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.msgs) >= target
	})
}

func (l *load) finish() []sent {
	close(l.stop)
	l.wg.Wait()
	return l.msgs
}

// poll checks cond every 10ms until it holds, failing the test after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by timeout
	}
	return time.Since(start)
}

// freshReply is a large-audience reply in a thread of its own, so that
// no limit is reached and the answer depends only on the store.
func freshReply(i int) mail {
	m := replyAll(i, fmt.Sprintf("root-%d-%s@example.org", i, uniq()))
	m.headers[3] = [2]string{"Message-ID", fmt.Sprintf(" <r-%d-%s@example.org>", i, uniq())}
	return m
}

func outageConfig(onError string) Config {
	cfg := testConfig()
	cfg.OnError = onError
	cfg.StoreTimeout, cfg.StoreBudget = outageTimeout, outageBudget
	cfg.Policy.Limits.MaxReplies = 10
	return cfg
}

func TestRedisOutageUnderLoad(t *testing.T) {
	for _, how := range []string{"kill", "stop"} {
		for _, onError := range []string{OnErrorAccept, OnErrorTempfail} {
			t.Run(how+"/"+onError, func(t *testing.T) { testOutage(t, how, onError) })
		}
	}
}

func testOutage(t *testing.T, how, onError string) {
	srv := redisenv.StartServer(t)
	ns := startNodes(t, 2, outageConfig(onError), store.RedisConfig{Addrs: []string{srv.Addr}, Timeout: outageTimeout})
	down := uint16(250)
	if onError == OnErrorTempfail {
		down = 451
	}

	usesRedis(t, ns, srv.Addr, nil, 10*time.Second) // warm: every node has connected
	l := startLoad(ns, outageWorkers, freshReply)
	l.waitSent(t, 50) // Redis up
	downAt := time.Now()
	if how == "kill" {
		srv.Kill(t)
	} else {
		srv.Stop(t)
	}
	l.waitSent(t, 100) // Redis down: in-flight and later messages, for at least a second
	poll(t, 10*time.Second, "a second of outage", func() bool { return time.Since(downAt) >= time.Second })
	upAt := time.Now()
	if how == "kill" {
		srv.Restart(t) // empty, same port
	} else {
		srv.Cont(t)
	}
	// Back in use without a restart of the daemons: every node's records
	// reach Redis again.
	recovered := usesRedis(t, ns, srv.Addr, nil, 10*time.Second)
	okAt := time.Now()
	l.waitSent(t, 50) // Redis up again
	msgs := l.finish()

	var worst time.Duration
	var answered [3]map[uint16]int // before, during, after
	for i := range answered {
		answered[i] = map[uint16]int{}
	}
	for i, m := range msgs {
		if m.err != nil {
			t.Fatalf("message %d (sent %v after the outage began): %v", i, m.start.Sub(downAt), m.err)
		}
		worst = max(worst, m.took)
		if m.took > outageBudget+outageMargin {
			t.Errorf("message %d took %v to decide, more than store.budget %v + %v", i, m.took, outageBudget, outageMargin)
		}
		var phase int
		var want []uint16
		switch {
		case m.end.Before(downAt):
			phase, want = 0, []uint16{250}
		case m.start.After(downAt) && m.end.Before(upAt):
			phase, want = 1, []uint16{down}
		case m.start.After(okAt):
			phase, want = 2, []uint16{250}
		default: // straddles a change: either answer is right
			phase, want = 1, []uint16{250, down}
		}
		answered[phase][m.code]++
		if !slices.Contains(want, m.code) {
			t.Errorf("message %d: %d %q, want one of %v", i, m.code, m.text, want)
		}
	}
	var fallbacks, storeErrs uint64
	for _, n := range ns {
		fallbacks += n.f.Stats.Fallbacks.Load()
		storeErrs += n.f.Stats.StoreErrors.Load()
		if p := n.f.Stats.Panics.Load(); p != 0 {
			t.Errorf("%d panics", p)
		}
	}
	if storeErrs == 0 || onError == OnErrorAccept && fallbacks == 0 || onError == OnErrorTempfail && fallbacks != 0 {
		t.Errorf("store errors %d, fallbacks %d: want errors, and fallbacks only with on_error=accept", storeErrs, fallbacks)
	}

	// The count is visible in Redis: three replies to one thread through
	// both nodes, counted in Redis, not in either node's memory.
	root, mails := storm(3)
	for i, m := range mails {
		if o := deliver(ns[i%2].addr, m, 5*time.Second); o.err != nil || o.code != 250 {
			t.Fatalf("after recovery, reply %d: %d %v", i, o.code, o.err)
		}
	}
	th := policy.MessageIDKey(root).Thread()
	if got := redisenv.CLI(t, srv.Addr, "HGET", "stormguard:{"+string(th)+"}:meta", "accepted"); got != "3" {
		t.Errorf("after recovery: redis-cli HGET meta accepted = %q, want 3", got)
	}
	t.Logf("%s, on_error=%s: %d messages (before %v, during %v, after %v); down %v; worst decision %v (store.budget %v); "+
		"Redis used again %v after it came back; store errors %d, fallbacks %d",
		how, onError, len(msgs), answered[0], answered[1], answered[2], upAt.Sub(downAt).Round(time.Millisecond),
		worst.Round(time.Millisecond), outageBudget, recovered.Round(time.Millisecond), storeErrs, fallbacks)
}
