package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/policy"
)

// writeConfig writes body to a stormguard.yaml in a temporary directory
// and returns its path.
func writeConfig(t *testing.T, body string) string { return testenv.ConfigFile(t, body) }

func TestDefaultsNeedNoConfig(t *testing.T) {
	cfg, _, err := loadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "inet:127.0.0.1:7357" || cfg.Store.Backend != "memory" {
		t.Errorf("listen=%q backend=%q, want inet:127.0.0.1:7357 and memory", cfg.Listen, cfg.Store.Backend)
	}
	p := cfg.Policy
	if p.MinAudience != 2500 || p.MaxReplies != 10 || p.DeliveryBudget != 1000000 || p.Window != time.Hour ||
		p.BlockFor != 6*time.Hour || p.Action != "reject" || p.AutoReplyMaxAudience != 100 {
		t.Errorf("policy defaults differ from the documented ones (README, docs/design.md): %+v", p)
	}
	if cfg.Redis.Timeout != 200*time.Millisecond || cfg.Redis.Prefix != "stormguard:" || cfg.Store.OnError != "accept" {
		t.Errorf("redis/store defaults: %+v %+v", cfg.Redis, cfg.Store)
	}
}

func TestFileEnvAndOrder(t *testing.T) {
	path := writeConfig(t, `
listen: unix:/run/stormguard/milter.sock
policy:
  max_replies: 5
  window: 30m
lists:
  all-staff@example.org: 850000
  Students@Example.ac.uk: 30000
`)
	t.Setenv("STORMGUARD_POLICY_MAX_REPLIES", "7")
	t.Setenv("STORMGUARD_POLICY_ACTION", "tempfail")
	cfg, _, err := loadConfig(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.MaxReplies != 7 {
		t.Errorf("env should win over the file: max_replies=%d", cfg.Policy.MaxReplies)
	}
	if cfg.Policy.Window != 30*time.Minute || cfg.Policy.Action != "tempfail" || cfg.Listen != "unix:/run/stormguard/milter.sock" {
		t.Errorf("got %+v", cfg.Policy)
	}
	if cfg.Lists["all-staff@example.org"] != 850000 || cfg.Lists["students@example.ac.uk"] != 30000 {
		t.Errorf("lists with dotted addresses: %v", cfg.Lists)
	}
}

func TestListsFromEnv(t *testing.T) {
	t.Setenv("STORMGUARD_LISTS", "all@example.org=3000, big@example.org=850000")
	cfg, _, err := loadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lists["all@example.org"] != 3000 || cfg.Lists["big@example.org"] != 850000 {
		t.Errorf("lists = %v", cfg.Lists)
	}
}

func TestInvalidConfigNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, body, env, want string
	}{
		{"unknown key", "policy:\n  max_replys: 5\n", "", "unknown key policy.max_replys"},
		{"unknown keys", "polcy:\n  max_replies: 5\nredis:\n  adress: x\n", "", "unknown keys polcy, redis.adress"},
		{"wrong type", "policy:\n  max_replies: lots\n", "", `config: policy.max_replies: "lots" is not a whole number`},
		{"wrong type and unknown key", "policy:\n  max_replies: lots\n  windw: 5m\n", "", `policy.max_replies: "lots" is not a whole number; unknown key policy.windw`},
		{"bad bool", "redis:\n  cluster: sometimes\n", "", `redis.cluster: "sometimes" is not true or false`},
		{"bad duration", "policy:\n  window: soon\n", "", `policy.window: "soon" is not a duration`},
		{"bad list size", "lists:\n  all@example.org: many\n", "", `"many" is not a whole number`},
		{"bad action", "policy:\n  action: bounce\n", "", "policy.action"},
		{"bad listen", "listen: tcp://127.0.0.1:7357\n", "", "listen"},
		{"bad backend", "store:\n  backend: etcd\n", "", `store.backend: "etcd" is not memory or redis`},
		{"bad log level", "log:\n  level: loud\n", "", `log.level: "loud" is not debug, info, warn or error`},
		{"bad on_error", "store:\n  on_error: ignore\n", "", "store.on_error"},
		{"negative", "policy:\n  min_audience: -1\n", "", "min_audience"},
		{"bad env", "", "STORMGUARD_POLICY_MAX_REPLIES=many", `policy.max_replies: "many" is not a whole number`},
		{"bad env duration", "", "STORMGUARD_REDIS_TIMEOUT=fast", `redis.timeout: "fast" is not a duration`},
		{"bad reject text", "policy:\n  reject_text: go away\n", "", "policy.reject_text"},
		{"bad mode", "mode: panic\n", "", "mode"},
		{"near miss 0", "report:\n  near_miss: 0\n", "", "report.near_miss: must be more than 0 and at most 1"},
		{"near miss over 1", "report:\n  near_miss: 1.5\n", "", "report.near_miss: must be more than 0 and at most 1"},
		{"near miss as a percentage", "report:\n  near_miss: 50\n", "", "report.near_miss"},
		{"near miss not a number", "report:\n  near_miss: half\n", "", "report.near_miss"},
		{"history 0", "report:\n  history: 0s\n", "", "report.history: must be positive"},
		{"max storms 0", "report:\n  max_storms: 0\n", "", "report.max_storms: must be at least 1"},
		{"not yaml", "policy: [\n", "", "stormguard.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			path := writeConfig(t, tc.body)
			_, _, err := loadConfig(path, true, nil)
			if err == nil {
				t.Fatal("want an error")
			}
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should be one line naming %q", err, tc.want)
			}
		})
	}
}

// TestConfigDeclaration checks what Config's tags declare against the
// packages: a key's default is what every package it goes to says, a oneof
// list holds its default, and every field of the packages' configs is set
// by a key or by Config.plain itself.
func TestConfigDeclaration(t *testing.T) {
	defaults := reflect.ValueOf(defaultPlain())
	covered := map[string]bool{}
	flags := map[string]bool{}
	for _, s := range settings {
		for _, to := range s.to {
			covered[plainPath(to)] = true
			d := defaults.FieldByIndex(to)
			if !d.IsZero() && !reflect.DeepEqual(plainDefault(d.Convert(reflect.TypeOf(s.Default))), s.Default) {
				t.Errorf("%s: default %v, but %s defaults to %v", s.Key, s.Default, plainPath(to), d)
			}
		}
		if s.OneOf != nil && !slices.Contains(s.OneOf, s.Default.(string)) {
			t.Errorf("%s: default %q is not one of %v", s.Key, s.Default, s.OneOf)
		}
		if s.Flag != "" && flags[s.Flag] {
			t.Errorf("%s: flag --%s names two keys", s.Key, s.Flag)
		}
		flags[s.Flag] = true
	}
	// Set by Config.plain from other keys or the build, not by a key of
	// their own; fields of func, interface or pointer type (Redis.TLS,
	// the event outlets) are wiring, not settings.
	// list_policy is parsed into both ListPolicies, and Admin.Policy is
	// a copy of Filter.Policy.
	computed := []string{"Events.UserAgent", "Events.PublishTimeout",
		"Events.Mail.ReportURL", "Events.Mail.RedisPrefix", // http.listen; the Redis store (wire.go)
		"Report.Retention", "Report.Timeout", "Report.Flush", "Report.Queue", // store.retention, redis.timeout, report's constants
		"Report.Limits.MaxReplies", "Report.Limits.DeliveryBudget", "Report.Limits.Window", "Report.Limits.BlockFor",
		"Filter.ListPolicies", "Admin.ListPolicies", "Admin.Policy"}
	var missing []string
	for _, p := range plainLeaves(reflect.TypeFor[plain](), "") {
		if !covered[p] && !slices.ContainsFunc(computed, func(c string) bool { return p == c || strings.HasPrefix(p, c+".") }) {
			missing = append(missing, p)
		}
	}
	if missing != nil {
		t.Errorf("no config key sets %v: add a field with a to tag to Config", missing)
	}
}

// plainPath names the field of plain at index, as a to tag does.
func plainPath(index []int) string {
	var names []string
	typ := reflect.TypeFor[plain]()
	for _, i := range index {
		f := typ.Field(i)
		names, typ = append(names, f.Name), f.Type
	}
	return strings.Join(names, ".")
}

func plainLeaves(typ reflect.Type, prefix string) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Struct:
			out = append(out, plainLeaves(f.Type, prefix+f.Name+".")...)
		case reflect.Func, reflect.Interface, reflect.Pointer, reflect.Chan:
		default:
			out = append(out, prefix+f.Name)
		}
	}
	return out
}

// TestConfigReachesPackages proves a key's value gets to every package
// config its to tag names, converted to the package's type.
func TestConfigReachesPackages(t *testing.T) {
	path := writeConfig(t, `
mode: monitor
store: {retention: 2h, on_error: tempfail, backend: redis}
redis: {timeout: 300ms, prefix: "sg:", addrs: ["10.0.0.1:6379"]}
policy: {max_replies: 7, action: monitor, exempt_senders: ["@it.example.org"]}
lists: {all@example.org: 3000}
alerts: {queue: 9, summary_every: 2m}
node: mx1
report: {history: 720h, near_miss: 0.75, max_storms: 50}
`)
	cfg, _, err := loadConfig(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, r, e, a := cfg.FilterConfig(), cfg.RedisConfig(), cfg.EventsConfig(), cfg.AdminConfig()
	switch {
	case f.Mode != policy.ModeMonitor || a.Mode != "monitor":
		t.Errorf("mode: filter %q admin %q", f.Mode, a.Mode)
	case f.Retention != 2*time.Hour || a.Retention != 2*time.Hour || f.OnError != "tempfail" || a.Backend != "redis":
		t.Errorf("store: filter %+v admin %+v", f, a)
	case r.Timeout != 300*time.Millisecond || f.StoreTimeout != 300*time.Millisecond || r.Prefix != "sg:" || r.Addrs[0] != "10.0.0.1:6379":
		t.Errorf("redis: %+v, filter's timeout %s", r, f.StoreTimeout)
	case f.Policy.Limits.MaxReplies != 7 || f.Policy.Action != policy.ConfigMonitor || f.Exempt[0] != "@it.example.org":
		t.Errorf("policy: %+v exempt %v", f.Policy, f.Exempt)
	case f.Lists["all@example.org"] != 3000 || a.Lists["all@example.org"] != 3000:
		t.Errorf("lists: filter %v admin %v", f.Lists, a.Lists)
	case e.Queue != 9 || cfg.plain().SummaryEvery != 2*time.Minute || e.PublishTimeout != time.Second:
		t.Errorf("alerts: %+v, summary every %s", e, cfg.plain().SummaryEvery)
	}
	rp := cfg.ReportConfig()
	if rp.Node != "mx1" || e.Node != "mx1" || rp.History != 720*time.Hour || rp.NearMiss != 0.75 || rp.MaxStorms != 50 ||
		rp.Retention != 2*time.Hour || rp.Limits.MaxReplies != 7 {
		t.Errorf("report: %+v, events' node %q", rp, e.Node)
	}
}

func TestConfigFlagsWin(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--log-level", "debug", "--backend", "redis"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORMGUARD_LOG_LEVEL", "warn")
	cfg, _, err := loadConfig(writeConfig(t, "listen: unix:/tmp/x.sock\n"), true, fs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" || cfg.Store.Backend != "redis" || cfg.Listen != "unix:/tmp/x.sock" {
		t.Errorf("flags set log.level %q store.backend %q; listen %q from the file", cfg.Log.Level, cfg.Store.Backend, cfg.Listen)
	}
}

func TestHTTPAdminSetting(t *testing.T) {
	for _, tc := range []struct { // the environment case last: it stays set
		yaml, env string
		want      adminSetting
		err       string
	}{
		{yaml: "", want: adminAuto},
		{yaml: "http:\n  admin: true\n", want: adminTrue},
		{yaml: "http:\n  admin: false\n", want: adminFalse},
		{yaml: "http:\n  admin: \"auto\"\n", want: adminAuto},
		{yaml: "http:\n  admin: maybe\n", err: `http.admin: "maybe" is not auto, true or false`},
		{yaml: "http:\n  admin: false\n", env: "TRUE", want: adminTrue},
	} {
		if tc.env != "" {
			t.Setenv("STORMGUARD_HTTP_ADMIN", tc.env)
		}
		cfg, _, err := loadConfig(writeConfig(t, tc.yaml), true, nil)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.err == "" && cfg.HTTP.Admin != tc.want:
			t.Errorf("%q env %q: http.admin %q, want %q", tc.yaml, tc.env, cfg.HTTP.Admin, tc.want)
		}
	}
	for listen, want := range map[string]string{"127.0.0.1:9357": "http://127.0.0.1:9357", "0.0.0.0:1": "http://127.0.0.1:1",
		":2": "http://127.0.0.1:2", "[::]:3": "http://[::1]:3", "[::1]:4": "http://[::1]:4"} {
		c := &Config{}
		c.HTTP.Listen = listen
		if got := c.AdminBaseURL(); got != want {
			t.Errorf("AdminBaseURL(%q) = %q, want %q", listen, got, want)
		}
	}
}
