// Package postfix measures what stormguard costs a real Postfix: a private
// Postfix on loopback relaying to smtp-sink, loaded with smtp-source at
// several concurrencies, with no milter, the no-op go-milter baseline,
// stormguard with the memory store and stormguard with Redis. Run it with
// ../postfix.sh (STORMGUARD_BENCH_POSTFIX=1: it takes minutes and needs
// root, postfix and redis-server). Without that variable it runs in smoke
// mode, as in CI: every setup once, 20 messages at concurrency 1 and 5,
// so that the harness cannot rot.
package postfix

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/bench/noop"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/store"
)

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// startSink runs smtp-sink on a free loopback port.
func startSink(t *testing.T) string {
	bin := testenv.LookPath(t, "smtp-sink", "apt-get install postfix")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	cmd := exec.Command(bin, "-u", "postfix", addr, "1024")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port a child process opens
	}
}

// serveMilter runs a milter server on ln until the test ends and returns
// its address as Postfix names it (inet:HOST:PORT or unix:PATH).
func serveMilter(t *testing.T, ln net.Listener, serve func(net.Listener) error, shutdown func(context.Context) error) string {
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("milter: %v", err)
		}
	})
	if a, ok := ln.Addr().(*net.UnixAddr); ok {
		return "unix:" + a.Name
	}
	return "inet:" + ln.Addr().String()
}

// listen opens the milter's listener: TCP on loopback, or a unix socket
// (transport "unix") in a directory Postfix's smtpd (user postfix) can
// reach, or TCP with quick ACKs ("qa", see noop.QuickAck).
func listen(t *testing.T, transport string) net.Listener {
	if transport == "unix" {
		dir, err := os.MkdirTemp("", "sgbench-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ln, err := milter.Listen("unix:"+filepath.Join(dir, "milter.sock"), 0o666)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = &countingListener{Listener: ln}
	if transport == "qa" {
		return noop.QuickAck(ln)
	}
	return ln
}

// countingListener counts the TCP segments of its connections each way,
// pure ACKs included, from the kernel's TCP_INFO when each closes.
type countingListener struct {
	net.Listener
	in, out atomic.Uint64 // segments received and sent by the milter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{TCPConn: c.(*net.TCPConn), l: l}, nil
}

type countingConn struct {
	*net.TCPConn
	l    *countingListener
	once sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(func() {
		rc, err := c.SyscallConn()
		if err != nil {
			return
		}
		_ = rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				c.l.in.Add(uint64(info.Segs_in))
				c.l.out.Add(uint64(info.Segs_out))
			}
		})
	})
	return c.TCPConn.Close()
}

// segments returns what ln has counted; ok is false for a listener that
// does not count (a unix socket).
func segments(ln net.Listener) (in, out uint64, ok bool) {
	if q, isQA := ln.(interface{ Unwrap() net.Listener }); isQA {
		ln = q.Unwrap()
	}
	c, ok := ln.(*countingListener)
	if !ok {
		return 0, 0, false
	}
	return c.in.Load(), c.out.Load(), true
}

func stormguard(t *testing.T, ln net.Listener, st, fallback store.Store) (string, *milter.Filter) {
	cfg := milter.Defaults()
	cfg.Lists = map[string]int{"all-staff@bench.example": 20000}
	f, err := milter.NewFilter(cfg, st, fallback, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.RefreshGlobals(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := milter.NewServer(f)
	return serveMilter(t, ln, srv.Serve, srv.Shutdown), f
}

func noopMilter(t *testing.T, ln net.Listener, protocols gomilter.OptProtocol) string {
	srv := noop.NewServerWith(protocols)
	return serveMilter(t, ln, func(ln net.Listener) error { return noop.Serve(srv, ln) }, srv.Shutdown)
}

// selfCPU is the user+sys CPU time of this process: the milters run in
// it, one at a time under load, smtp-source and the servers are children.
func selfCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitDrained polls until the instance's queue is empty (every message
// delivered to smtp-sink), so that a run's Postfix CPU includes the
// delivery of its messages and none of them is delivered during the next
// run.
func waitDrained(t *testing.T, pf *postfixenv.Server) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := 0
		for _, q := range []string{"maildrop", "incoming", "active", "deferred"} {
			_ = filepath.WalkDir(filepath.Join(pf.QueueDir, q), func(_ string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					n++
				}
				return nil
			})
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix %s: %d messages still queued after 2 minutes", pf.Addr, n)
		}
		time.Sleep(20 * time.Millisecond) // polling the queue directory, an external effect
	}
}

// source runs smtp-source and returns messages/s.
func source(t *testing.T, bin, addr string, conc, msgs int) float64 {
	start := time.Now()
	cmd := exec.Command(bin, "-s", strconv.Itoa(conc), "-m", strconv.Itoa(msgs), "-l", "1024",
		"-f", "sender@bench.example", "-t", "rcpt@bench.example", addr)
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("smtp-source -s %d -m %d %s: %v\n%s", conc, msgs, addr, err, out)
	}
	return float64(msgs) / elapsed.Seconds()
}

// setups are the configurations the harness can measure, by name; SETUPS
// chooses among them (default: defaultSetups). The "-unix" ones talk to
// Postfix over a unix socket, "-qa" ones over TCP with quick ACKs
// (noop.QuickAck), the rest over TCP on loopback.
//
//	none          no milter
//	noop          the no-op go-milter, replying to every event (noop.Protocols)
//	noop-skip     the no-op skipping CONNECT/HELO/DATA (noop.StallProtocols): the 40 ms stall
//	noop-nr       the no-op with the v6 no-reply flags (noop.NoReplyProtocols)
//	memory, redis stormguard with its memory store, with Redis
const defaultSetups = "none noop noop-skip memory redis"

var knownSetups = []string{"none", "noop", "noop-unix", "noop-skip", "noop-skip-qa", "noop-nr", "noop-nr-qa",
	"noop-nr-unix", "memory", "memory-unix", "redis", "redis-unix", "redis-qa"}

// stalls reports whether a setup may stall 40 ms per message at
// concurrency 1 (the skip and no-reply experiments): it is sent at most
// 100 messages there.
func stalls(name string) bool {
	return strings.HasPrefix(name, "noop-skip") || strings.HasPrefix(name, "noop-nr")
}

// isStormguard reports whether a setup is stormguard itself: those must
// never stall (the guard at the end of TestPostfixThroughput).
func isStormguard(name string) bool {
	return strings.HasPrefix(name, "memory") || strings.HasPrefix(name, "redis")
}

func TestPostfixThroughput(t *testing.T) {
	smoke := os.Getenv("STORMGUARD_BENCH_POSTFIX") != "1"
	rounds := envInt(t, "ROUNDS", 3)
	msgs := envInt(t, "MESSAGES", 1000)
	if smoke {
		rounds, msgs = 1, 20
		t.Setenv("CONCURRENCY", "1 5")
		t.Setenv("SETUPS", "")
	}
	var concs []int
	for c := range strings.FieldsSeq(os.Getenv("CONCURRENCY")) {
		n, err := strconv.Atoi(c)
		if err != nil {
			t.Fatal(err)
		}
		concs = append(concs, n)
	}
	if len(concs) == 0 {
		concs = []int{1, 10, 20}
	}
	names := strings.Fields(os.Getenv("SETUPS"))
	if len(names) == 0 {
		names = strings.Fields(defaultSetups)
	}
	for _, n := range names {
		if !slices.Contains(knownSetups, n) {
			t.Fatalf("SETUPS: unknown setup %q; known: %s", n, strings.Join(knownSetups, " "))
		}
	}
	srcBin := testenv.LookPath(t, "smtp-source", "apt-get install postfix")
	sink := startSink(t)

	var redisSrv *redisenv.Server
	redisStore := func() store.Store {
		if redisSrv == nil {
			redisSrv = redisenv.StartServer(t)
		}
		r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{redisSrv.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	filters := map[string]*milter.Filter{} // stormguard setups: each must decide every message
	smtpd := map[string]*postfixenv.Server{}
	lns := map[string]net.Listener{} // the milters' listeners, to count TCP segments
	for _, name := range names {
		transport := "tcp"
		if i := strings.LastIndexByte(name, '-'); i > 0 && (name[i+1:] == "unix" || name[i+1:] == "qa") {
			transport = name[i+1:]
		}
		base := strings.TrimSuffix(strings.TrimSuffix(name, "-unix"), "-qa")
		var spec string
		var ln net.Listener
		if base != "none" {
			ln = listen(t, transport)
			lns[name] = ln
		}
		switch base {
		case "none":
		case "noop":
			spec = noopMilter(t, ln, noop.Protocols)
		case "noop-skip":
			spec = noopMilter(t, ln, noop.StallProtocols)
		case "noop-nr":
			spec = noopMilter(t, ln, noop.NoReplyProtocols)
		case "memory":
			spec, filters[name] = stormguard(t, ln, store.NewMemory(), nil)
		case "redis":
			spec, filters[name] = stormguard(t, ln, redisStore(), store.NewMemory())
		}
		smtpd[name] = postfixenv.Start(t, postfixenv.Options{RelayTo: sink, Milter: spec, DefaultAction: "tempfail",
			// Enough smtpd processes for the highest concurrency.
			Extra: map[string]string{"default_process_limit": "100"}})
	}
	// Warm up every instance (process start, milter connections).
	warm := 50
	if smoke {
		warm = 5
	}
	sent := map[string]uint64{} // messages each stormguard must have decided
	for _, name := range names {
		source(t, srcBin, smtpd[name].Addr, 5, warm)
		sent[name] += uint64(warm)
		waitDrained(t, smtpd[name])
	}

	// Per "setup/conc": msg/s, and CPU ms per message of the milter (this
	// process), of the Postfix instance (all its processes: smtpd,
	// cleanup, qmgr, smtp, ...; until its queue is empty) and of
	// redis-server.
	type sample struct{ rate, milter, postfix, redis, segsIn, segsOut float64 }
	runs := map[string][]sample{}
	redisCPU := func() time.Duration {
		if redisSrv == nil {
			return 0
		}
		own, _, _ := testenv.ProcCPU(redisSrv.Pid())
		return own
	}
	for round := range rounds {
		for _, c := range concs {
			for k := range names {
				name := names[(k+round)%len(names)]
				n := msgs
				if c == 1 && !smoke {
					n = max(msgs/3, 50)
					if stalls(name) {
						n = min(n, 100) // 40 ms each
					}
				}
				pf := smtpd[name]
				m0, p0, r0 := selfCPU(t), pf.CPU(), redisCPU()
				in0, out0, counted := segments(lns[name])
				rate := source(t, srcBin, pf.Addr, c, n)
				waitDrained(t, pf)
				m1, p1, r1 := selfCPU(t), pf.CPU(), redisCPU()
				in1, out1, _ := segments(lns[name])
				sent[name] += uint64(n)
				perMsg := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(n) }
				key := fmt.Sprintf("%s/%d", name, c)
				s := sample{rate, perMsg(m1 - m0), perMsg(p1 - p0), perMsg(r1 - r0), -1, -1}
				if counted {
					s.segsIn, s.segsOut = float64(in1-in0)/float64(n), float64(out1-out0)/float64(n)
				}
				runs[key] = append(runs[key], s)
				t.Logf("round %d conc %2d %-12s %6.0f msg/s, CPU ms/msg: milter %.2f postfix %.2f redis %.2f; TCP segments/msg to/from the milter %.1f/%.1f",
					round+1, c, name, s.rate, s.milter, s.postfix, s.redis, s.segsIn, s.segsOut)
			}
		}
	}
	median := func(key string, f func(sample) float64) float64 {
		var v []float64
		for _, s := range runs[key] {
			v = append(v, f(s))
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rate := func(s sample) float64 { return s.rate }
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| concurrency | setup | msg/s | ÷ none | ÷ noop | milter CPU ms/msg | Postfix CPU ms/msg | Redis CPU ms/msg | TCP segments/msg to / from the milter |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range concs {
		none, nop := median(fmt.Sprintf("none/%d", c), rate), median(fmt.Sprintf("noop/%d", c), rate)
		for _, name := range names {
			key := fmt.Sprintf("%s/%d", name, c)
			r := median(key, rate)
			segs := "–"
			if in := median(key, func(s sample) float64 { return s.segsIn }); in >= 0 {
				segs = fmt.Sprintf("%.1f / %.1f", in, median(key, func(s sample) float64 { return s.segsOut }))
			}
			fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %.2f | %.2f | %.2f | %s |\n", c, name, r, ratio(r, none), ratio(r, nop),
				median(key, func(s sample) float64 { return s.milter }),
				median(key, func(s sample) float64 { return s.postfix }),
				median(key, func(s sample) float64 { return s.redis }), segs)
		}
	}
	atOne := max(msgs/3, 50)
	if smoke {
		atOne = msgs
	}
	fmt.Fprintf(&b, "\nmedian of %d interleaved runs; %d messages per run (%d at concurrency 1, at most 100 for setups that stall), 1 KiB each, one message per SMTP session\n",
		rounds, msgs, atOne)
	fmt.Fprintf(&b, "CPU: user+sys per message, from the run's start until the instance's queue is empty; milter = this test process (getrusage), where the milters run and only the setup under load is busy (the none row is its floor); Postfix = every process of the instance's session plus what its master reaped (/proc); Redis = redis-server (/proc), shared by the Redis setups\n")
	for _, name := range names {
		if f := filters[name]; f != nil {
			fmt.Fprintf(&b, "stormguard %s: %d decisions (store errors %d)\n", name, f.Stats.Decisions.Load(), f.Stats.StoreErrors.Load())
		}
	}
	t.Log(b.String())
	if !smoke {
		fmt.Print(b.String())
	}
	// smtp-source saw no error; each stormguard saw every message it was sent.
	for name, f := range filters {
		if got := f.Stats.Decisions.Load(); got != sent[name] {
			t.Errorf("stormguard (%s) decided %d messages, %d were sent through it", name, got, sent[name])
		}
	}
	// The stall guard: at concurrency 1, 40 ms per message is Nagle waiting
	// for a delayed ACK. stormguard must never stall; the no-op with the
	// skip flags must, or this guard could not see a stall.
	if slices.Contains(concs, 1) {
		for _, name := range names {
			r := median(name+"/1", rate)
			switch {
			case isStormguard(name) && r < 40:
				t.Errorf("%s at concurrency 1: %.0f msg/s, under 40 (25 ms a message): the 40 ms stall is back", name, r)
			case name == "noop-skip" && r > 30:
				t.Errorf("noop-skip at concurrency 1: %.0f msg/s, where the skip flags stalled Postfix to ~21: the stall guard cannot see a stall", r)
			}
		}
	}
}
