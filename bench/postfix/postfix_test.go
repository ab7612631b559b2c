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
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/bench/noop"
	"github.com/stormguard/stormguard/internal/testenv"
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

// serveMilter runs a milter server on a loopback port until the test ends.
func serveMilter(t *testing.T, serve func(net.Listener) error, shutdown func(context.Context) error) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
	return ln.Addr().String()
}

func stormguard(t *testing.T, st, fallback store.Store) (string, *milter.Filter) {
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
	return serveMilter(t, srv.Serve, srv.Shutdown), f
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

func TestPostfixThroughput(t *testing.T) {
	smoke := os.Getenv("STORMGUARD_BENCH_POSTFIX") != "1"
	rounds := envInt(t, "ROUNDS", 3)
	msgs := envInt(t, "MESSAGES", 1000)
	if smoke {
		rounds, msgs = 1, 20
		t.Setenv("CONCURRENCY", "1 5")
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
	srcBin := testenv.LookPath(t, "smtp-source", "apt-get install postfix")
	sink := startSink(t)

	noopSrv := noop.NewServer()
	noopAddr := serveMilter(t, func(ln net.Listener) error { return noop.Serve(noopSrv, ln) }, noopSrv.Shutdown)
	eomSrv := noop.NewServerWith(noop.StallProtocols)
	eomAddr := serveMilter(t, func(ln net.Listener) error { return noop.Serve(eomSrv, ln) }, eomSrv.Shutdown)
	memAddr, memF := stormguard(t, store.NewMemory(), nil)
	r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{testenv.StartRedis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	redisAddr, redisF := stormguard(t, r, store.NewMemory())

	type setup struct{ name, milter string }
	setups := []setup{{"none", ""}, {"noop", noopAddr}, {"noop-skip", eomAddr}, {"memory", memAddr}, {"redis", redisAddr}}
	smtpd := map[string]string{}
	for _, s := range setups {
		m := ""
		if s.milter != "" {
			m = "inet:" + s.milter
		}
		pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayTo: sink, Milter: m, DefaultAction: "tempfail",
			// Enough smtpd processes for the highest concurrency.
			Extra: map[string]string{"default_process_limit": "100"}})
		smtpd[s.name] = pf.Addr
	}
	// Warm up every instance (process start, milter connections).
	warm := 50
	if smoke {
		warm = 5
	}
	for _, s := range setups {
		source(t, srcBin, smtpd[s.name], 5, warm)
	}
	sent := map[string]uint64{"memory": uint64(warm), "redis": uint64(warm)} // messages each stormguard must have decided

	rates := map[string][]float64{} // "setup/conc" -> rates
	for round := range rounds {
		for _, c := range concs {
			n := msgs
			if c == 1 && !smoke {
				n = max(msgs/3, 50)
			}
			for k := range setups {
				s := setups[(k+round)%len(setups)]
				rate := source(t, srcBin, smtpd[s.name], c, n)
				sent[s.name] += uint64(n)
				key := fmt.Sprintf("%s/%d", s.name, c)
				rates[key] = append(rates[key], rate)
				t.Logf("round %d conc %2d %-7s %6.0f msg/s", round+1, c, s.name, rate)
			}
		}
	}
	median := func(key string) float64 {
		v := slices.Clone(rates[key])
		slices.Sort(v)
		return v[len(v)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| concurrency | none | noop | noop-skip | memory | redis | noop ÷ none | memory ÷ noop | redis ÷ noop |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range concs {
		skip := median(fmt.Sprintf("noop-skip/%d", c))
		none, nop, mem, red := median(fmt.Sprintf("none/%d", c)), median(fmt.Sprintf("noop/%d", c)),
			median(fmt.Sprintf("memory/%d", c)), median(fmt.Sprintf("redis/%d", c))
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |\n", c, none, nop, skip, mem, red, nop/none, mem/nop, red/nop)
	}
	atOne := max(msgs/3, 50)
	if smoke {
		atOne = msgs
	}
	fmt.Fprintf(&b, "\nmedian of %d interleaved runs; %d messages per run (%d at concurrency 1), 1 KiB each, one message per SMTP session\n",
		rounds, msgs, atOne)
	fmt.Fprintf(&b, "stormguard decisions: memory %d, redis %d (store errors %d)\n",
		memF.Stats.Decisions.Load(), redisF.Stats.Decisions.Load(), redisF.Stats.StoreErrors.Load())
	t.Log(b.String())
	if !smoke {
		fmt.Print(b.String())
	}
	// smtp-source saw no error; each stormguard saw every message it was sent.
	if got := memF.Stats.Decisions.Load(); got != sent["memory"] {
		t.Errorf("stormguard (memory) decided %d messages, %d were sent through it", got, sent["memory"])
	}
	if got := redisF.Stats.Decisions.Load(); got != sent["redis"] {
		t.Errorf("stormguard (redis) decided %d messages, %d were sent through it", got, sent["redis"])
	}
}
