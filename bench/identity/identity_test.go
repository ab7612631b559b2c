package identity

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// settings of one invocation, from the environment (../identity.sh sets
// them).
type settings struct {
	full      bool
	before    rev
	after     rev
	instances int // of each round-trip scenario
	rounds    int
	warmup    time.Duration
	load      loadOpts
}

// rev is one side of the comparison: a stormguard binary and its name.
type rev struct{ name, bin string }

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// settingsFrom reads the environment. Without STORMGUARD_BENCH_IDENTITY=1
// it is smoke mode, as in CI: the binary built from this tree on both
// sides, every scenario once, one short latency round at a low rate.
func settingsFrom(t *testing.T) settings {
	if os.Getenv("STORMGUARD_BENCH_IDENTITY") != "1" {
		bin := filepath.Join(t.TempDir(), "stormguard")
		if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/stormguard").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		this := rev{name: "this tree", bin: bin}
		return settings{before: this, after: this, instances: 1, rounds: 1, warmup: 200 * time.Millisecond,
			load: loadOpts{rate: 200, duration: 500 * time.Millisecond, conns: 4, perConn: 10}}
	}
	s := settings{full: true,
		before:    rev{name: os.Getenv("BEFORE_REV"), bin: os.Getenv("BEFORE_BIN")},
		after:     rev{name: os.Getenv("AFTER_REV"), bin: os.Getenv("AFTER_BIN")},
		instances: envInt(t, "INSTANCES", 5),
		rounds:    envInt(t, "ROUNDS", 7),
		warmup:    envDuration(t, "WARMUP", time.Second),
		load: loadOpts{rate: float64(envInt(t, "RATE", 1000)), duration: envDuration(t, "DURATION", 4*time.Second),
			conns: envInt(t, "CONNS", 16), perConn: 10},
	}
	for _, r := range []*rev{&s.before, &s.after} {
		if r.bin == "" {
			t.Fatal("STORMGUARD_BENCH_IDENTITY=1 needs BEFORE_BIN and AFTER_BIN (stormguard binaries): run ../identity.sh BEFORE AFTER")
		}
		if r.name == "" {
			r.name = r.bin
		}
	}
	return s
}

// TestIdentityCost measures what thread identity costs per message, for
// two revisions side by side: the Redis round trips of each message class
// (standalone and Cluster), and the p99 added at end of headers over the
// no-op milter at a storm-shaped load, the revisions interleaved round by
// round. Run it with ../identity.sh BEFORE AFTER (minutes); without
// STORMGUARD_BENCH_IDENTITY=1 it runs in smoke mode, as in CI, and checks
// what holds for every revision: small mail costs no round trip, every
// large-audience message at least one, the counts repeat exactly for the
// same binary, and every message gets a verdict without a store error.
func TestIdentityCost(t *testing.T) {
	s := settingsFrom(t)
	// The report goes to stdout (../identity.sh keeps it in
	// bench/results/), in smoke mode to the test log.
	var w io.Writer = os.Stdout
	if !s.full {
		var report strings.Builder
		w = &report
		defer func() { t.Log("\n" + report.String()) }()
	}

	fmt.Fprintf(w, "# Thread identity: before %s, after %s\n\n", s.before.name, s.after.name)
	fmt.Fprintf(w, "%s UTC, %s, %d CPUs, load average %s\n", time.Now().UTC().Format("2006-01-02 15:04"), runtime.Version(), runtime.NumCPU(), loadavg())

	// Round trips.
	type key struct {
		cluster bool
		after   bool
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano()) // the same message ids on both sides
	counts := map[key][][]count{}
	outside := map[key][]Trip{}
	for _, cluster := range []bool{false, true} {
		for _, after := range []bool{false, true} {
			r := s.before
			if after {
				r = s.after
			}
			k := key{cluster, after}
			t.Run(fmt.Sprintf("roundtrips/%s/%s", backendName(cluster), sideName(after)), func(t *testing.T) {
				counts[k], outside[k] = roundTrips(t, r.bin, cluster, s.instances, run)
			})
			if counts[k] == nil {
				t.FailNow()
			}
		}
	}
	fmt.Fprintf(w, "\n## Redis round trips per message on node B (rounds / requests; %d instances each, min–max)\n\n", s.instances)
	fmt.Fprintln(w, "A round is one wait for Redis; a Cluster pipeline sent to three masters at once is one round of three requests.")
	fmt.Fprintln(w, "Counted by a TCP proxy between the daemons and each redis-server that parses the protocol: a request is the")
	fmt.Fprintln(w, "commands one connection sends before it reads their replies (a pipeline is one).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| message | standalone before | standalone after | Cluster before | Cluster after |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for si, sc := range scenarios {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", sc.name,
			cell(counts[key{false, false}][si]), cell(counts[key{false, true}][si]),
			cell(counts[key{true, false}][si]), cell(counts[key{true, true}][si]))
	}
	fmt.Fprintln(w, "\nThe trips (commands of each request; → a new round, | in the same round):")
	for si, sc := range scenarios {
		fmt.Fprintf(w, "\n- %s\n", sc.name)
		for _, k := range []key{{false, false}, {false, true}, {true, false}, {true, true}} {
			fmt.Fprintf(w, "  - %s %s: %s\n", backendName(k.cluster), sideName(k.after), variants(counts[k][si]))
		}
	}
	fmt.Fprintln(w, "\nNode B's trips outside its messages (its timers: the settings refresh, the Cluster topology):")
	for _, k := range []key{{false, false}, {false, true}, {true, false}, {true, true}} {
		fmt.Fprintf(w, "- %s %s: %s\n", backendName(k.cluster), sideName(k.after), orNone(summarize(outside[k])))
	}

	// The checks that hold for every revision.
	for _, k := range []key{{false, false}, {false, true}, {true, false}, {true, true}} {
		for si, sc := range scenarios {
			for i, c := range counts[k][si] {
				small := !sc.measured().Large()
				switch {
				case small && c.requests() != 0:
					t.Errorf("%s %s, %s #%d: %d requests (%s), want none: small mail never reaches the store", backendName(k.cluster), sideName(k.after), sc.name, i+1, c.requests(), describe(c.path))
				case !small && c.rounds() < 1:
					t.Errorf("%s %s, %s #%d: no round trip, want at least one", backendName(k.cluster), sideName(k.after), sc.name, i+1)
				}
			}
		}
	}
	if !s.full {
		for _, cluster := range []bool{false, true} {
			for si, sc := range scenarios {
				b, a := counts[key{cluster, false}][si], counts[key{cluster, true}][si]
				if cell(b) != cell(a) {
					t.Errorf("%s, %s: the same binary counted %s and %s", backendName(cluster), sc.name, cell(b), cell(a))
				}
			}
		}
	}

	// Latency.
	t.Run("latency", func(t *testing.T) { latency(t, s, w) })
	fmt.Fprintf(w, "\nload average at the end: %s\n", loadavg())
}

func backendName(cluster bool) string {
	if cluster {
		return "Cluster"
	}
	return "standalone"
}

func sideName(after bool) string {
	if after {
		return "after"
	}
	return "before"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// latency runs the interleaved rounds and writes their tables.
func latency(t *testing.T, s settings, w io.Writer) {
	noopT := startNoop(t)
	type pair struct{ before, after *target }
	sides := map[bool]pair{}
	for _, cluster := range []bool{false, true} {
		sides[cluster] = pair{startNodes(t, "before", s.before.bin, cluster), startNodes(t, "after", s.after.bin, cluster)}
	}
	o := s.load
	fmt.Fprintf(w, "\n## p99 at end of headers, %.0f msg/s over %d connections, %v per run, %d rounds\n\n", o.rate, o.conns, o.duration, s.rounds)
	fmt.Fprintf(w, "Mix: 90 %% small new mail, 5 %% small replies, 5 %% to a %d-member list in storms (%d threads at a time, %d messages each: the original, then replies to what was let through;\n", ListSize, Threads, ThreadLen)
	fmt.Fprintln(w, "a reply to a reply is 60 % References = parent's + parent, 25 % iPhone (parent only), 15 % 60 ids). Each stormguard target is two nodes")
	fmt.Fprintln(w, "of its revision on their own Redis, the connections alternating between them; the no-op milter (bench/noop) likewise runs")
	fmt.Fprintln(w, "as two processes. Within a round the targets run one after another, the order rotating from round to round. CPU: ms per")
	fmt.Fprintln(w, "message of the target's two milter processes, of its redis-servers.")

	// Warm-up: every target once, unmeasured.
	wo := o
	wo.duration = s.warmup
	for _, tg := range []*target{noopT, sides[false].before, sides[false].after, sides[true].before, sides[true].after} {
		if err := drive(t, tg, wo).check(); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}

	type runKey struct {
		round   int
		cluster bool
		name    string
	}
	results := map[runKey]runResult{}
	fmt.Fprintln(w, "\n| round | Redis | target | achieved msg/s | kept up | wait p99 | p50 | p99 | p99.9 | p99 − noop | milters CPU | Redis CPU | verdicts | errors | store warnings |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for round := range s.rounds {
		for _, cluster := range []bool{false, true} {
			order := []*target{noopT, sides[cluster].before, sides[cluster].after}
			for k := range order {
				tg := order[(k+round)%len(order)]
				r := drive(t, tg, o)
				if err := r.check(); err != nil {
					t.Errorf("round %d %s: %v", round+1, backendName(cluster), err)
				}
				results[runKey{round, cluster, tg.name}] = r
			}
			n := results[runKey{round, cluster, "noop"}]
			for _, name := range []string{"noop", "before", "after"} {
				r := results[runKey{round, cluster, name}]
				added, dcpu, rcpu := "–", "–", "–"
				dcpu = fmt.Sprintf("%.3f", r.perMsg(r.daemon))
				if name != "noop" {
					added = fmt.Sprintf("%+.2f ms", float64(quantile(r.lat, 0.99)-quantile(n.lat, 0.99))/float64(time.Millisecond))
					rcpu = fmt.Sprintf("%.3f", r.perMsg(r.redis))
				}
				kept := "yes"
				if !r.keptUp(o) {
					kept = "**no**"
				}
				fmt.Fprintf(w, "| %d | %s | %s | %.0f | %s | %s ms | %s ms | %s ms | %s ms | %s | %s | %s | %s | %d | %d |\n",
					round+1, backendName(cluster), name, r.achieved(), kept, ms(quantile(r.wait, 0.99)),
					ms(quantile(r.lat, 0.5)), ms(quantile(r.lat, 0.99)), ms(quantile(r.lat, 0.999)), added, dcpu, rcpu, verdictList(r.verdicts), r.errs, r.warnings)
			}
		}
	}

	// A round is quiet when the no-op and both revisions kept up: in a
	// round where one of them did not, the machine (shared) was busy with
	// something else, and its latencies measure that.
	quiet := func(round int, cluster bool) bool {
		for _, name := range []string{"noop", "before", "after"} {
			if !results[runKey{round, cluster, name}].keptUp(o) {
				return false
			}
		}
		return true
	}
	// medians is two cells: the median (min to max) of the quiet rounds,
	// and of all rounds.
	medians := func(f []float64, q []bool, format string) string {
		var fq []float64
		for i, v := range f {
			if q[i] {
				fq = append(fq, v)
			}
		}
		cell := func(f []float64) string {
			if len(f) == 0 {
				return "–"
			}
			return fmt.Sprintf(format+" ("+format+" to "+format+", %d)", median(f), slices.Min(f), slices.Max(f), len(f))
		}
		return cell(fq) + " | " + cell(f)
	}
	// Per round: what each revision adds, and after against before.
	fmt.Fprintln(w, "\np99 added over the no-op (ms), by round, and after ÷ before (quiet: all three runs of the round kept up):")
	fmt.Fprintln(w, "\n| Redis | round | quiet | noop p99 | before p99 | after p99 | before added | after added | after ÷ before (p99) | after − before (added) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	type series struct{ addB, addA, ratio, diff, d50, d90 []float64 }
	sums := map[bool]*series{}
	qs := map[bool][]bool{}
	for _, cluster := range []bool{false, true} {
		se := &series{}
		sums[cluster] = se
		for round := range s.rounds {
			q := quiet(round, cluster)
			qs[cluster] = append(qs[cluster], q)
			n := quantile(results[runKey{round, cluster, "noop"}].lat, 0.99)
			b := quantile(results[runKey{round, cluster, "before"}].lat, 0.99)
			a := quantile(results[runKey{round, cluster, "after"}].lat, 0.99)
			ab, aa := float64(b-n)/1e6, float64(a-n)/1e6
			se.addB, se.addA = append(se.addB, ab), append(se.addA, aa)
			se.ratio, se.diff = append(se.ratio, float64(a)/float64(b)), append(se.diff, aa-ab)
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %+.2f | %+.2f | %.3f | %+.2f |\n", backendName(cluster), round+1, yesNo(q),
				ms(n), ms(b), ms(a), ab, aa, float64(a)/float64(b), aa-ab)
		}
	}
	// The messages that reach Redis: their p50 is steady from run to run
	// where the p99 of all mail is not, so a round trip more or less
	// shows there first.
	fmt.Fprintln(w, "\nLarge-audience messages only (the 5 % that reach Redis), by round, ms:")
	fmt.Fprintln(w, "\n| Redis | round | quiet | noop p50 | before p50 | after p50 | after − before (p50) | before p90 | after p90 | after − before (p90) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, cluster := range []bool{false, true} {
		se := sums[cluster]
		for round := range s.rounds {
			n := large(results[runKey{round, cluster, "noop"}])
			b := large(results[runKey{round, cluster, "before"}])
			a := large(results[runKey{round, cluster, "after"}])
			b50, a50, b90, a90 := quantile(b, 0.5), quantile(a, 0.5), quantile(b, 0.9), quantile(a, 0.9)
			se.d50, se.d90 = append(se.d50, float64(a50-b50)/1e6), append(se.d90, float64(a90-b90)/1e6)
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %+.3f | %s | %s | %+.3f |\n", backendName(cluster), round+1, yesNo(qs[cluster][round]),
				ms(quantile(n, 0.5)), ms(b50), ms(a50), float64(a50-b50)/1e6, ms(b90), ms(a90), float64(a90-b90)/1e6)
		}
	}
	fmt.Fprintln(w, "\n**Summary**: median (min to max, rounds) of the quiet rounds and of all rounds; ms, except the ratio.")
	fmt.Fprintln(w, "\n| Redis | figure | quiet rounds | all rounds |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, cluster := range []bool{false, true} {
		se, q := sums[cluster], qs[cluster]
		for _, row := range []struct {
			name   string
			f      []float64
			format string
		}{
			{"p99 added over the no-op, before", se.addB, "%+.2f"},
			{"p99 added over the no-op, after", se.addA, "%+.2f"},
			{"p99 after ÷ before", se.ratio, "%.3f"},
			{"p99 added, after − before", se.diff, "%+.2f"},
			{"large-audience p50, after − before", se.d50, "%+.3f"},
			{"large-audience p90, after − before", se.d90, "%+.3f"},
		} {
			fmt.Fprintf(w, "| %s | %s | %s |\n", backendName(cluster), row.name, medians(row.f, q, row.format))
		}
	}

	// CPU per message: time the processes ran, not when, so a busy
	// machine disturbs it far less than latency.
	fmt.Fprintln(w, "\nCPU ms per message, median of all rounds (min–max):")
	fmt.Fprintln(w, "\n| Redis | noop milters | before milters | after milters | before Redis | after Redis |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, cluster := range []bool{false, true} {
		row := "| " + backendName(cluster) + " |"
		for _, col := range []struct {
			name  string
			redis bool
		}{{"noop", false}, {"before", false}, {"after", false}, {"before", true}, {"after", true}} {
			var f []float64
			for round := range s.rounds {
				r := results[runKey{round, cluster, col.name}]
				if col.redis {
					f = append(f, r.perMsg(r.redis))
				} else {
					f = append(f, r.perMsg(r.daemon))
				}
			}
			row += fmt.Sprintf(" %.3f (%.3f–%.3f) |", median(f), slices.Min(f), slices.Max(f))
		}
		fmt.Fprintln(w, row)
	}

	// Per class, all rounds together.
	fmt.Fprintln(w, "\nBy message class, all rounds together (p50 / p99, ms; messages):")
	fmt.Fprintln(w, "\n| Redis | class | noop | before | after |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, cluster := range []bool{false, true} {
		for c := range NumClasses {
			row := fmt.Sprintf("| %s | %s |", backendName(cluster), Class(c))
			for _, name := range []string{"noop", "before", "after"} {
				var all []time.Duration
				for round := range s.rounds {
					all = append(all, results[runKey{round, cluster, name}].classLat[c]...)
				}
				if len(all) == 0 {
					row += " – |"
					continue
				}
				row += fmt.Sprintf(" %s / %s (%d) |", ms(quantile(all, 0.5)), ms(quantile(all, 0.99)), len(all))
			}
			fmt.Fprintln(w, row)
		}
	}
	fmt.Fprintln(w, "\nStore warnings: warnings and errors the target's daemons logged during the run (a Redis call past redis.timeout, 200ms,")
	fmt.Fprintln(w, "falls back to the memory store: a loaded machine). They are reported, not failed: the run's latency includes them.")
}

// large is a run's latencies of the large-audience classes.
func large(r runResult) []time.Duration {
	var d []time.Duration
	for c := Original; c < NumClasses; c++ {
		d = append(d, r.classLat[c]...)
	}
	return d
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func verdictList(v map[string]int) string {
	var parts []string
	for _, k := range []string{"accept", "continue", "reject", "tempfail", "discard"} {
		if v[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v[k]))
		}
	}
	return strings.Join(parts, ", ")
}

func median(f []float64) float64 {
	s := slices.Clone(f)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
