package e2e

// The simulate command's own part: flags and config into sim.Config, the
// table, the JSON and the chart files. The simulator itself is tested in
// package sim.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/sim"
)

// TestSimulateCommand: the defaults print the NHS table and write both
// charts; --json is the report; flags reach the simulator.
func TestSimulateCommand(t *testing.T) {
	cfg := writeConfig(t, "policy:\n  max_replies: 12\n")
	dir := t.TempDir()
	svgPath, pngPath := filepath.Join(dir, "storm.svg"), filepath.Join(dir, "storm.png")
	out := mustRun(t, "simulate", "--svg", svgPath, "--png", pngPath, "--config", cfg)
	for _, want := range []string{
		"simulated storm: 1 original + 80 reply-alls to a list of 850,000 over 1h16m0s (curve burst, seed 1), 1 node, memory store\n",
		", max_replies 12, delivery_budget 1,000,000, ", // the config's policy
		"\nunprotected      80       80        0        68,850,000  -\n",
		"\nstormguard       80       1         79       1,700,000   +",
		"\nchart: " + svgPath + ", " + pngPath + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range []string{svgPath, pngPath} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("chart %s: %v", p, err)
		}
	}

	var rep sim.Report
	js := mustRun(t, "simulate", "--json", "--audience", "3000", "--replies", "7", "--duration", "10m", "--curve", "front", "--nodes", "2", "--seed", "3", "--config", cfg)
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if rep.Audience != 3000 || rep.Replies != 7 || rep.Duration != "10m0s" || rep.Curve != "front" || rep.Nodes != 2 || rep.Seed != 3 ||
		rep.Policy.Limits["max_replies"] != 12 || len(rep.Scenarios) != 3 || len(rep.Scenarios[2].Series) != 8 {
		t.Errorf("--json with flags: %+v", rep)
	}
}

// TestSimulateBackendFlag: --backend redis wins over the config's memory
// store, and the table names the private prefixes it deleted.
func TestSimulateBackendFlag(t *testing.T) {
	rd := redisenv.Start(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: memory\nredis:\n  addrs: [%s]\n", rd))
	out := mustRun(t, "simulate", "--backend", "redis", "--nodes", "2", "--replies", "12", "--config", cfg)
	if !strings.Contains(out, "2 nodes, redis store") || !strings.Contains(out, "redis: private prefixes stormguard:sim:") ||
		!strings.Contains(out, "; deleted the ") {
		t.Errorf("simulate --backend redis:\n%s", out)
	}
	if got := redisenv.CLI(t, rd, "DBSIZE"); got != "0" {
		t.Errorf("DBSIZE %s after the simulation, want 0", got)
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
		{[]string{"--audience", "0"}, "sim: audience must be at least 1, got 0"},
		{[]string{"--curve", "zigzag"}, `sim: curve "zigzag": want burst, uniform or front`},
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
}

// TestSimulateClientFlags: --clients and --reply-share reach the
// simulator; --clients plain --reply-share 0 is the plain replies, each
// naming the original; mistakes are one line each.
func TestSimulateClientFlags(t *testing.T) {
	cfg := writeConfig(t, "")
	plain := mustRun(t, "simulate", "--clients", "plain", "--reply-share", "0", "--config", cfg)
	if !strings.Contains(plain, "\nstormguard       80       1         79       1,700,000   +") || strings.Contains(plain, "replies:") {
		t.Errorf("--clients plain --reply-share 0:\n%s", plain)
	}
	var rep sim.Report
	js := mustRun(t, "simulate", "--json", "--replies", "5", "--audience", "3000", "--clients", "iphone=3, gmail=1", "--reply-share", "0.25", "--config", cfg)
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if rep.Clients != "iphone=3,gmail=1" || rep.ReplyShare != 0.25 {
		t.Errorf("clients %q, reply share %v; want iphone=3,gmail=1 and 0.25", rep.Clients, rep.ReplyShare)
	}
	def := mustRun(t, "simulate", "--replies", "3", "--audience", "3000", "--config", cfg)
	if want := "\nreplies: clients by weight outlook365 40, outlook 15, outlook-norefs 5, iphone 20, gmail 6, apple 4, thunderbird 2, notes 2, notes7 1, roundcube 2, rainloop 1, mutt 1, webform 1; 60% answer"; !strings.Contains(def, want) {
		t.Errorf("the default mix and share are not in the table:\n%s", def)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--clients", "pine=1"}, `invalid argument "pine=1" for "--clients" flag: sim: clients: unknown client "pine"`},
		{[]string{"--clients", "iphone"}, `invalid argument "iphone" for "--clients" flag: sim: clients: "iphone" is not name=weight`},
		{[]string{"--reply-share", "2"}, "sim: reply share must be between 0 and 1, got 2"},
		{[]string{"--reply-share", "half"}, `invalid argument "half" for "--reply-share" flag`},
		{[]string{"--clients", "plain"}, "sim: reply share 0.6 needs a client mix: plain replies all answer the original"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errb := run(t, append([]string{"simulate", "--config", cfg}, tc.args...)...)
			if code == 0 || !strings.Contains(errb, tc.want) || strings.Count(strings.TrimSpace(errb), "\n") != 0 || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want non-zero, nothing on stdout and one line with %q", code, out, errb, tc.want)
			}
		})
	}
}
