package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"go.yaml.in/yaml/v3"

	"github.com/stormguard/stormguard/internal/testenv"
)

const (
	rulesFile     = "../deploy/prometheus/stormguard-rules.yml"
	rulesTestFile = "../deploy/prometheus/stormguard-rules.test.yml"
	dashboardFile = "../deploy/grafana/stormguard.json"
)

// TestAlertRules checks the rules with promtool and runs their unit
// tests, and requires a test case in which each alert fires.
func TestAlertRules(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool", "apt-get install prometheus (./scripts/test.sh --setup)")
	run(t, promtool, "check", "rules", rulesFile)
	run(t, promtool, "test", "rules", rulesTestFile)

	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	readYAML(t, rulesFile, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	readYAML(t, rulesTestFile, &tests)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if !fires[r.Alert] {
				t.Errorf("alert %s: no test in %s where it fires", r.Alert, rulesTestFile)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
}

// TestMonitoringNamesExportedMetrics runs the daemon with every optional
// collector on (memory store, list sync, mail notices, webhook, the sender
// gate), drives a storm and a gate hold through it, and reads its
// /metrics. Every metric an alert rule or a dashboard query names must be
// there (or be Prometheus' own up), and every series the rules' unit
// tests feed in must name an exported metric with labels it exports.
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the daemon")
	}
	promtool := testenv.LookPath(t, "promtool", "apt-get install prometheus (./scripts/test.sh --setup)")
	exported := scrapeFullDaemon(t)
	names := make([]string, 0, len(exported))
	for n := range exported {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("the daemon exports %d metric names:\n%s", len(names), strings.Join(names, "\n"))
	isExported := func(name string) bool { return name == "up" || exported[name] != nil }

	// The rules.
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	readYAML(t, rulesFile, &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			checkNames(t, "alert "+r.Alert, r.Expr, isExported)
		}
	}

	// The series the rules' unit tests feed in: exported names, with
	// label values the daemon exports (job and instance come from the
	// scrape).
	var tests struct {
		Tests []struct {
			InputSeries []struct{ Series string } `yaml:"input_series"`
		}
	}
	readYAML(t, rulesTestFile, &tests)
	for _, tc := range tests.Tests {
		for _, in := range tc.InputSeries {
			name, labels := parseSeries(t, in.Series)
			if name == "up" {
				continue
			}
			if !isExported(name) {
				t.Errorf("%s: input series %s: the daemon does not export %s", rulesTestFile, in.Series, name)
				continue
			}
			for k, v := range labels {
				if k == "job" || k == "instance" {
					continue
				}
				if !exported[name][k+"="+v] {
					t.Errorf("%s: input series %s: the daemon exports no %s with %s=%q", rulesTestFile, in.Series, name, k, v)
				}
			}
		}
	}

	// The dashboard: every query names exported metrics, and parses (each
	// is checked by promtool as a recording rule, with Grafana's variables
	// given values).
	exprs := dashboardExprs(t)
	if len(exprs) == 0 {
		t.Fatalf("%s: no queries", dashboardFile)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__range", "6h", "$instance", ".*")
	var rec strings.Builder
	rec.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		checkNames(t, "dashboard "+e.where, e.expr, isExported)
		q, _ := json.Marshal(vars.Replace(e.expr))
		fmt.Fprintf(&rec, "      - record: dashboard:query:%d\n        expr: %s\n", i, q)
	}
	p := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(p, []byte(rec.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", p).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's queries do not parse: %v\n%s", err, out)
	}
	t.Logf("%d dashboard queries and %d alert rules checked", len(exprs), len(rules.Groups[0].Rules))
}

func checkNames(t *testing.T, where, expr string, isExported func(string) bool) {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: %s names no metric", where, expr)
	}
	for _, n := range names {
		if !isExported(n) {
			t.Errorf("%s: %s names %s, which the daemon does not export", where, expr, n)
		}
	}
}

type dashboardExpr struct{ where, expr string }

// dashboardExprs returns the dashboard's panel queries and the selectors
// of its label_values variables.
func dashboardExprs(t *testing.T) []dashboardExpr {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Targets []struct{ Expr string }
		Panels  json.RawMessage // a row's panels
	}
	var d struct {
		Panels     []panel
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []dashboardExpr
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, dashboardExpr{"panel " + p.Title, tg.Expr})
			}
			var inner []panel
			if len(p.Panels) > 0 && json.Unmarshal(p.Panels, &inner) == nil {
				walk(inner)
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(SELECTOR, LABEL)", dashboardFile, v.Name, q.Query)
			continue
		}
		out = append(out, dashboardExpr{"variable " + v.Name, m[1]})
	}
	return out
}

var seriesRE = regexp.MustCompile(`^([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?$`)
var labelRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"`)

// parseSeries splits a series in the exposition and promtool notation,
// name{k="v", ...}.
func parseSeries(t *testing.T, s string) (string, map[string]string) {
	t.Helper()
	m := seriesRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		t.Fatalf("cannot parse series %q", s)
	}
	labels := map[string]string{}
	for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
		labels[l[1]] = l[2]
	}
	return m[1], labels
}

// scrapeFullDaemon builds and runs stormguard serve with every optional
// collector on, drives a storm and a gate hold, and returns its /metrics
// as name -> the "label=value" pairs seen on that name.
func scrapeFullDaemon(t *testing.T) map[string]map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "stormguard")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/stormguard").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	closed := testenv.FreePort(t) // nothing listens: notices and webhooks fail
	conf := testenv.ConfigFile(t, fmt.Sprintf(`store:
  backend: memory
lists:
  all-staff@example.org: 5000
  everyone@example.org: 20000
gate:
  min_audience: 10000
  action: hold
  posters: [comms@example.org]
listsync:
  every: 1h
  alias_maps: ["texthash:%s/aliases"]
  alias_domains: [example.org]
notify:
  to: [postmaster@example.org]
  smtp: 127.0.0.1:%d
  timeout: 1s
alerts:
  webhook_url: http://127.0.0.1:%d/hook
  webhook_timeout: 1s
http:
  admin_token_file: %s/admin.token
`, dir, closed, closed, dir))
	if err := os.WriteFile(filepath.Join(dir, "aliases"), []byte("staff: a@example.org, b@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := start(t, []string{bin, "serve", "--config", conf})
	if v := d.storm(t, "all-staff@example.org", 20); len(v) != 11 || v[10] != "reject" {
		t.Fatalf("storm verdicts %v, want the 11th rejected", v)
	}
	if reason := d.post(t, "someone@example.org", "everyone@example.org"); reason == "" {
		t.Errorf("a post to everyone@example.org from someone not allowed was not held:\n%s", d.logText())
	} else {
		t.Logf("a post to everyone@example.org from someone not allowed: held (%s)", reason)
	}

	exported := map[string]map[string]bool{}
	for _, line := range strings.Split(d.scrape(t), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sel, _, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '}'); i >= 0 {
			sel = line[:i+1]
		}
		name, labels := parseSeries(t, sel)
		if exported[name] == nil {
			exported[name] = map[string]bool{}
		}
		for k, v := range labels {
			exported[name][k+"="+v] = true
		}
	}
	if !exported["stormguard_decisions_total"]["rule=gate"] || !exported["stormguard_decisions_total"]["action=hold"] {
		t.Errorf("no gate hold counted: %v\n%s", exported["stormguard_decisions_total"], d.logText())
	}
	return exported
}

// post sends one new message (not a reply) through to its end, body
// included, and returns the quarantine reason if the milter holds it.
func (d *daemon) post(t *testing.T, from, to string) string {
	t.Helper()
	s := d.session(t)
	defer s.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Mail(from, "") },
		func() (*gomilter.Action, error) { return s.Rcpt(to, "") },
		func() (*gomilter.Action, error) { return s.DataStart() },
		func() (*gomilter.Action, error) { return s.HeaderField("From", "<"+from+">", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("To", to, nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("Subject", "party", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("Message-ID", "<party.1@example.org>", nil) },
		func() (*gomilter.Action, error) { return s.HeaderEnd() },
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("Cake at four.\r\n")) },
	}
	for i, step := range steps {
		act, err := step()
		if err != nil {
			t.Fatalf("post step %d: %v", i, err)
		}
		if act.StopProcessing() {
			t.Fatalf("post step %d: decided %v before the end of the message", i, act.Type)
		}
	}
	mods, _, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if m.Type == gomilter.ActionQuarantine {
			return m.Reason
		}
	}
	return ""
}

// session opens a milter session to the daemon, as an MTA's smtpd does.
func (d *daemon) session(t *testing.T) *gomilter.ClientSession {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroMTAFQDN, "mx.example.org")
	macros.Set(gomilter.MacroDaemonName, "smtpd")
	s, err := gomilter.NewClient("tcp", d.milter).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Conn("client.example.org", gomilter.FamilyInet, 25000, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("client.example.org"); err != nil {
		t.Fatal(err)
	}
	return s
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
