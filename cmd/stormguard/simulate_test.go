package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/policy"
)

// simJSON runs simulate --json with args and decodes the report.
func simJSON(t *testing.T, args ...string) simReport {
	t.Helper()
	out := mustRun(t, append([]string{"simulate", "--json"}, args...)...)
	var rep simReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("simulate --json: %v\n%s", err, out)
	}
	return rep
}

// scenario returns the report's scenario with id.
func (r simReport) scenario(t *testing.T, id string) simResult {
	t.Helper()
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no scenario %q in %+v", id, r.Scenarios)
	return simResult{}
}

// checkNHS asserts the NHSmail figures of the defaults: 850,000 members,
// 80 reply-alls.
func checkNHS(t *testing.T, rep simReport) {
	t.Helper()
	for _, want := range []struct {
		id                 string
		accepted, refused  int
		deliveries         int64
		firstReply         int // the reply (1-based) refused first; 0: none
		rule               policy.Rule
		simulated          bool
		maxReplies, budget int
	}{
		{"unprotected", 80, 0, 81 * 850000, 0, "", false, 0, 0},                            // 68,850,000
		{"count_rule", 10, 70, 11 * 850000, 11, policy.RuleMaxReplies, true, 10, 0},        // 9,350,000
		{"stormguard", 1, 79, 2 * 850000, 2, policy.RuleDeliveryBudget, true, 10, 1000000}, // 1,700,000
	} {
		s := rep.scenario(t, want.id)
		if s.Sent != 80 || s.Accepted != want.accepted || s.Refused != want.refused || s.Deliveries != want.deliveries || s.Simulated != want.simulated {
			t.Errorf("%s: sent %d, accepted %d, refused %d, deliveries %d, simulated %v; want 80, %d, %d, %d, %v",
				want.id, s.Sent, s.Accepted, s.Refused, s.Deliveries, s.Simulated, want.accepted, want.refused, want.deliveries, want.simulated)
		}
		if s.Simulated && (s.MaxReplies != want.maxReplies || s.DeliveryBudget != int64(want.budget)) {
			t.Errorf("%s: ran with max_replies %d, delivery_budget %d; want %d, %d", want.id, s.MaxReplies, s.DeliveryBudget, want.maxReplies, want.budget)
		}
		if len(s.Series) != 81 || s.Series[0].Seconds != 0 || s.Series[0].Deliveries != 850000 || s.Series[80].Deliveries != want.deliveries {
			t.Errorf("%s: series of %d points from %+v; want 81 from {0 850000} to %d", want.id, len(s.Series), s.Series[0], want.deliveries)
			continue
		}
		switch {
		case want.firstReply == 0 && s.FirstRefusal != nil:
			t.Errorf("%s: first refusal at %vs, want none", want.id, *s.FirstRefusal)
		case want.firstReply > 0 && (s.FirstRefusal == nil || *s.FirstRefusal != s.Series[want.firstReply].Seconds || s.FirstRefusalRule != string(want.rule)):
			t.Errorf("%s: first refusal %v (%s); want reply %d's arrival, %vs (%s)", want.id, s.FirstRefusal, s.FirstRefusalRule,
				want.firstReply, s.Series[want.firstReply].Seconds, want.rule)
		}
	}
}

// TestSimulateNHSFigures: the defaults are the NHSmail storm of 2016, run
// through the real filter on the memory store.
func TestSimulateNHSFigures(t *testing.T) {
	rep := simJSON(t, "--config", writeConfig(t, ""))
	if rep.Audience != 850000 || rep.Replies != 80 || rep.Duration != "1h16m0s" || rep.Curve != "burst" || rep.Nodes != 1 || rep.Seed != 1 || rep.Backend != "memory" {
		t.Errorf("defaults: %+v", rep)
	}
	checkNHS(t, rep)
	if rep.Cleanup != "" {
		t.Errorf("memory store: redis_cleanup %q", rep.Cleanup)
	}

	out := mustRun(t, "simulate", "--config", writeConfig(t, ""))
	for _, want := range []string{
		"SCENARIO         REPLIES  ACCEPTED  REFUSED  DELIVERIES  FIRST REFUSAL\n",
		"\nunprotected      80       80        0        68,850,000  -\n",
		"\ncount rule only  80       10        70       9,350,000   +",
		" (max_replies)\n",
		"\nstormguard       80       1         79       1,700,000   +",
		" (delivery_budget)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// sitePrefixKeys lists the keys under the site's prefix.
func sitePrefixKeys(t *testing.T, rd string) []string {
	t.Helper()
	keys := strings.Fields(testenv.RedisCLI(t, rd, "KEYS", "stormguard:*"))
	slices.Sort(keys)
	return keys
}

// TestSimulateRedisFourNodes: the same storm over 4 nodes sharing a real
// Redis stops at the same replies, never reads the site's state (the site
// is in mode off and says the list has 5 members), and leaves no key
// behind.
func TestSimulateRedisFourNodes(t *testing.T) {
	rd := testenv.StartRedis(t)
	testenv.RedisCLI(t, rd, "SET", "stormguard:mode", "off")
	testenv.RedisCLI(t, rd, "HSET", "stormguard:lists", simList, "5")
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\n", rd))

	rep := simJSON(t, "--nodes", "4", "--config", cfg)
	if rep.Nodes != 4 || rep.Backend != "redis" {
		t.Errorf("nodes %d, backend %q; want 4, redis", rep.Nodes, rep.Backend)
	}
	checkNHS(t, rep)
	if !strings.HasPrefix(rep.Cleanup, "deleted the ") {
		t.Errorf("redis_cleanup %q; want every key deleted", rep.Cleanup)
	}
	if got, want := sitePrefixKeys(t, rd), []string{"stormguard:lists", "stormguard:mode"}; !slices.Equal(got, want) {
		t.Errorf("keys left under stormguard: %q; want only the test's own %q", got, want)
	}
	if got := testenv.RedisCLI(t, rd, "DBSIZE"); got != "2" {
		t.Errorf("DBSIZE %s after the simulation, want 2", got)
	}

	// --backend redis wins over the config's memory store; the table names the private prefixes.
	mem := writeConfig(t, fmt.Sprintf("store:\n  backend: memory\nredis:\n  addrs: [%s]\n", rd))
	out := mustRun(t, "simulate", "--backend", "redis", "--nodes", "2", "--replies", "12", "--config", mem)
	if !strings.Contains(out, "2 nodes, redis store") || !strings.Contains(out, "redis: private prefixes stormguard:sim:") ||
		!strings.Contains(out, "; deleted the ") {
		t.Errorf("simulate --backend redis:\n%s", out)
	}
	if got := sitePrefixKeys(t, rd); len(got) != 2 {
		t.Errorf("keys left under stormguard: %q", got)
	}
}

// TestSimulateRedisCluster: on a Redis Cluster the keys of the
// simulation, spread over three masters, are all found and deleted.
func TestSimulateRedisCluster(t *testing.T) {
	addrs := testenv.StartRedisCluster(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  cluster: true\n  addrs: [%s]\n", strings.Join(addrs, ", ")))
	rep := simJSON(t, "--nodes", "2", "--config", cfg)
	checkNHS(t, rep)
	if !strings.HasPrefix(rep.Cleanup, "deleted the ") {
		t.Errorf("redis_cleanup %q; want every key deleted", rep.Cleanup)
	}
	for _, a := range addrs {
		if got := testenv.RedisCLI(t, a, "DBSIZE"); got != "0" {
			t.Errorf("master %s holds %s keys after the simulation: %s", a, got, testenv.RedisCLI(t, a, "KEYS", "*"))
		}
	}
}

// TestSimulateRedisWithoutScan: as the daemon's ACL user, which may not
// SCAN, the keys without a TTL are deleted and the output says the others
// expire by themselves; every key left has a TTL.
func TestSimulateRedisWithoutScan(t *testing.T) {
	rd := testenv.StartRedis(t)
	testenv.AddACLUser(t, rd)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\n  username: %s\n  password: %s\n",
		rd, testenv.RedisACLUser, testenv.RedisACLPassword))
	rep := simJSON(t, "--config", cfg)
	checkNHS(t, rep)
	if !strings.Contains(rep.Cleanup, "could not SCAN") || !strings.Contains(rep.Cleanup, "expire by themselves within 24h0m0s") {
		t.Errorf("redis_cleanup %q; want it to say the keys expire by themselves", rep.Cleanup)
	}
	keys := sitePrefixKeys(t, rd)
	if len(keys) == 0 {
		t.Fatal("no key left: SCAN should have been refused")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "stormguard:sim:") {
			t.Errorf("key %q outside the private prefix", k)
		}
		if ttl, _ := strconv.Atoi(testenv.RedisCLI(t, rd, "PTTL", k)); ttl <= 0 {
			t.Errorf("key %q left without a TTL (PTTL %d)", k, ttl)
		}
	}
}

// TestSimulateMonitor: with policy.action monitor nothing is refused; the
// replies that would have been are delivered with the header.
func TestSimulateMonitor(t *testing.T) {
	cfg := writeConfig(t, "policy:\n  action: monitor\n")
	rep := simJSON(t, "--replies", "5", "--audience", "3000", "--config", cfg)
	s := rep.scenario(t, "stormguard")
	if s.Accepted != 5 || s.Refused != 0 || s.Tagged != 0 || s.Deliveries != 6*3000 { // 5 × 3001 is within the budget
		t.Errorf("monitor, small storm: %+v", s)
	}
	rep = simJSON(t, "--config", cfg)
	s = rep.scenario(t, "stormguard")
	if s.Accepted != 80 || s.Refused != 0 || s.Tagged != 79 || s.FirstRefusal != nil || s.Deliveries != 81*850000 {
		t.Errorf("monitor: accepted %d, refused %d, tagged %d, first refusal %v, deliveries %d; want 80, 0, 79, none, 68850000",
			s.Accepted, s.Refused, s.Tagged, s.FirstRefusal, s.Deliveries)
	}
	out := mustRun(t, "simulate", "--config", cfg)
	if !strings.Contains(out, "monitor: replies delivered with the X-Stormguard header instead of refused: count rule only 70, stormguard 79.\n") {
		t.Errorf("table does not mention the tagged replies:\n%s", out)
	}
}

// TestSimulateCharts: the SVG is XML with three series; the PNG decodes
// and has the chart's size.
func TestSimulateCharts(t *testing.T) {
	dir := t.TempDir()
	svgPath, pngPath := filepath.Join(dir, "storm.svg"), filepath.Join(dir, "storm.png")
	out := mustRun(t, "simulate", "--svg", svgPath, "--png", pngPath, "--config", writeConfig(t, ""))
	if !strings.Contains(out, "chart: "+svgPath+", "+pngPath) {
		t.Errorf("output does not name the charts:\n%s", out)
	}

	raw, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(raw))
	var series, texts []string
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Space + " " + se.Name.Local
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
		}
		switch {
		case se.Name.Local == "polyline" && attr["class"] == "series":
			series = append(series, attr["data-scenario"])
			if len(strings.Fields(attr["points"])) < 2 {
				t.Errorf("series %s has points %q", attr["data-scenario"], attr["points"])
			}
		case se.Name.Local == "text":
			var s string
			if err := dec.DecodeElement(&s, &se); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, s)
		}
	}
	if root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q, want svg", root)
	}
	if want := []string{"unprotected", "count_rule", "stormguard"}; !slices.Equal(series, want) {
		t.Errorf("SVG series %q, want %q", series, want)
	}
	for _, want := range []string{"0", "80M", "1h", "simulated time", "deliveries", "unprotected: 68,850,000",
		"count rule only: 9,350,000", "stormguard: 1,700,000"} {
		if !slices.Contains(texts, want) {
			t.Errorf("SVG has no text %q (ticks, axes, legend): %q", want, texts)
		}
	}

	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != chartWidth || b.Dy() != chartHeight {
		t.Errorf("PNG is %dx%d, want %dx%d", b.Dx(), b.Dy(), chartWidth, chartHeight)
	}
	// The three colours are drawn.
	for i, c := range seriesColors {
		found := false
		for y := plotTop; y <= plotBottom && !found; y++ {
			for x := plotLeft; x <= plotRight && !found; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				found = uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(b>>8) == c.B
			}
		}
		if !found {
			t.Errorf("PNG has no pixel of series %d's colour", i)
		}
	}
}

// TestSimulateBadFlags: one clear line and a non-zero exit for each mistake.
func TestSimulateBadFlags(t *testing.T) {
	cfg := writeConfig(t, "")
	missing := filepath.Join(t.TempDir(), "no-such-dir", "storm.svg")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--audience", "0"}, "--audience must be at least 1, got 0"},
		{[]string{"--replies", "-1"}, "--replies must not be negative, got -1"},
		{[]string{"--nodes", "0"}, "--nodes must be at least 1, got 0"},
		{[]string{"--nodes", "1001"}, "--nodes must be at most 1000, got 1001"},
		{[]string{"--replies", "100001"}, "--replies must be at most 100000, got 100001"},
		{[]string{"--curve", "zigzag"}, `--curve "zigzag": want burst, uniform or front`},
		{[]string{"--duration", "-1m"}, "--duration must not be negative"},
		{[]string{"--duration", "soon"}, `invalid argument "soon" for "--duration" flag`},
		{[]string{"--audience", "many"}, `invalid argument "many" for "--audience" flag`},
		{[]string{"--svg", missing}, "cannot write the chart: open " + missing + ": no such file or directory"},
		{[]string{"--png", t.TempDir()}, "cannot write the chart: open "},
		{[]string{"--backend", "postgres"}, `config: store.backend: "postgres" is not memory or redis`},
		{[]string{"extra"}, `unknown command "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errb := run(t, append([]string{"simulate", "--config", cfg}, tc.args...)...)
			if code == 0 || !strings.Contains(errb, tc.want) || strings.Count(strings.TrimSpace(errb), "\n") != 0 || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want non-zero, nothing on stdout and one line with %q", code, out, errb, tc.want)
			}
		})
	}
	// Redis down: one line naming it.
	dead := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [127.0.0.1:%d]\n", testenv.FreePort(t)))
	code, _, errb := run(t, "simulate", "--config", dead)
	if code == 0 || !strings.Contains(errb, "cannot reach Redis at 127.0.0.1:") || strings.Count(strings.TrimSpace(errb), "\n") != 0 {
		t.Errorf("dead Redis: exit %d, stderr %q", code, errb)
	}
}

// TestSimulateDeterministic: the same seed gives the same JSON; another
// seed moves the burst's arrivals.
func TestSimulateDeterministic(t *testing.T) {
	cfg := writeConfig(t, "")
	a := mustRun(t, "simulate", "--json", "--seed", "7", "--nodes", "3", "--config", cfg)
	b := mustRun(t, "simulate", "--json", "--seed", "7", "--nodes", "3", "--config", cfg)
	if a != b {
		t.Errorf("same seed, different JSON:\n%s\n---\n%s", a, b)
	}
	if c := mustRun(t, "simulate", "--json", "--seed", "8", "--nodes", "3", "--config", cfg); c == a {
		t.Error("seeds 7 and 8 gave the same burst")
	}
}

// TestSimulateArrivals checks the curves' formulas.
func TestSimulateArrivals(t *testing.T) {
	d := 80 * time.Minute
	if got := arrivals(curveUniform, 4, d, 1); !slices.Equal(got, []time.Duration{20 * time.Minute, 40 * time.Minute, 60 * time.Minute, 80 * time.Minute}) {
		t.Errorf("uniform: %v", got)
	}
	if got := arrivals(curveFront, 4, d, 1); !slices.Equal(got, []time.Duration{5 * time.Minute, 20 * time.Minute, 45 * time.Minute, 80 * time.Minute}) {
		t.Errorf("front: %v", got)
	}
	burst := arrivals(curveBurst, 10000, d, 1)
	if !slices.IsSorted(burst) || burst[0] < 0 || burst[len(burst)-1] > d {
		t.Fatalf("burst: not sorted within [0, %s]: first %s, last %s", d, burst[0], burst[len(burst)-1])
	}
	early := 0
	for _, at := range burst {
		if at < d/4 {
			early++
		}
	}
	// (1 - e^-1) / (1 - e^-4) of the replies arrive in the first quarter.
	if want := 10000 * (1 - math.Exp(-1)) / (1 - math.Exp(-4)); math.Abs(float64(early)-want) > 200 {
		t.Errorf("burst: %d of 10000 in the first quarter, want about %.0f", early, want)
	}
	if got := arrivals(curveBurst, 3, 0, 1); !slices.Equal(got, []time.Duration{0, 0, 0}) {
		t.Errorf("burst over 0s: %v", got)
	}
	if got := arrivals(curveUniform, 0, d, 1); len(got) != 0 {
		t.Errorf("no replies: %v", got)
	}
}
