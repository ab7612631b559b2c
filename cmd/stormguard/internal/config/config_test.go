package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/stormguard/stormguard/admin"
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
	if p.MinAudience != 2500 || p.Limits.MaxReplies != 10 || p.Limits.DeliveryBudget != 1000000 || p.Limits.Window != time.Hour ||
		p.Limits.BlockFor != 6*time.Hour || p.Action != "reject" || p.AutoReplyMaxAudience != 100 {
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
	if cfg.Policy.Limits.MaxReplies != 7 {
		t.Errorf("env should win over the file: max_replies=%d", cfg.Policy.Limits.MaxReplies)
	}
	if cfg.Policy.Limits.Window != 30*time.Minute || cfg.Policy.Action != "tempfail" || cfg.Listen != "unix:/run/stormguard/milter.sock" {
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
		{"wrong type", "policy:\n  max_replies: lots\n", "", `stormguard.yaml: policy.max_replies (line 2): "lots" is not a whole number`},
		{"wrong type and unknown key", "policy:\n  max_replies: lots\n  windw: 5m\n", "", `policy.max_replies (line 2): "lots" is not a whole number; unknown key policy.windw`},
		{"bad bool", "redis:\n  cluster: sometimes\n", "", `redis.cluster (line 2): "sometimes" is not true or false`},
		{"bad duration", "policy:\n  window: soon\n", "", `policy.window (line 2): "soon" is not a duration`},
		{"bad list size", "lists:\n  all@example.org: many\n", "", `"many" is not a whole number`},
		{"bad action", "policy:\n  action: bounce\n", "", "policy.action"},
		{"bad listen", "listen: tcp://127.0.0.1:7357\n", "", "listen"},
		{"bad backend", "store:\n  backend: etcd\n", "", `store.backend: "etcd" is not memory or redis`},
		{"bad log level", "log:\n  level: loud\n", "", `log.level: "loud" is not debug, info, warn or error`},
		{"bad on_error", "store:\n  on_error: ignore\n", "", "store.on_error"},
		{"negative", "policy:\n  min_audience: -1\n", "", "min_audience"},
		{"bad env", "", "STORMGUARD_POLICY_MAX_REPLIES=many", `config: policy.max_replies (STORMGUARD_POLICY_MAX_REPLIES): "many" is not a whole number`},
		{"bad env duration", "", "STORMGUARD_REDIS_TIMEOUT=fast", `redis.timeout (STORMGUARD_REDIS_TIMEOUT): "fast" is not a duration`},
		{"bad reject text", "policy:\n  reject_text: go away\n", "", "policy.reject_text"},
		{"bad mode", "mode: panic\n", "", "mode"},
		{"bad trusted network", "policy:\n  trusted_networks: [10.0.0.0/33]\n", "", `policy.trusted_networks: "10.0.0.0/33"`},
		{"per-client cap over the total", "http:\n  max_connections: 4\n  max_connections_per_client: 5\n", "", "http.max_connections_per_client"},
		{"near miss 0", "report:\n  near_miss: 0\n", "", "report.near_miss: must be more than 0 and at most 1"},
		{"near miss over 1", "report:\n  near_miss: 1.5\n", "", "report.near_miss: must be more than 0 and at most 1"},
		{"near miss as a percentage", "report:\n  near_miss: 50\n", "", "report.near_miss"},
		{"near miss not a number", "report:\n  near_miss: half\n", "", "report.near_miss"},
		{"history 0", "report:\n  history: 0s\n", "", "report.history: must be positive"},
		{"max storms 0", "report:\n  max_storms: 0\n", "", "report.max_storms: must be at least 1"},
		{"not yaml", "policy: [\n", "", "stormguard.yaml"},
		{"given twice", "policy:\n  max_replies: 3\n  max_replies: 4\n", "", "policy.max_replies (line 3): given twice"},
		{"a section as a value", "policy: 3\n", "", "policy (line 1): \"3\" is not a section of keys"},
		{"a value as a section", "listen:\n  port: 1\n", "", "listen (line 2): a section is not a string"},
		{"a list of sections", "redis:\n  addrs: [{a: 1}]\n", "", "redis.addrs (line 2): a section in the list is not a string"},
		{"bad list policy section", "list_policy:\n  a@example.org: {max_replies: x}\n", "", "list_policy (line 2): a@example.org: max_replies"},
		{"bad flag-free env list policy", "", "STORMGUARD_LIST_POLICY=a@example.org=window=5m", "list_policy (STORMGUARD_LIST_POLICY): a@example.org"},
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

// TestDefaultsReachPackages: with nothing set, every package gets its
// own Defaults() (but for what plain computes from other keys), so that
// defaults and plain agree field by field: a field defaults leaves out or
// plain forgets to copy fails here.
func TestDefaultsReachPackages(t *testing.T) {
	c := defaults()
	got, want := c.plain(), defaultPlain()
	// Computed by plain from other keys, not a package default.
	want.Events.PublishTimeout = time.Second
	want.Events.Node, want.Report.Node, want.Filter.Node = hostname(), hostname(), hostname()
	want.Events.Mail.OncePer = c.Policy.Limits.BlockFor
	want.Events.Mail.ReportURL = c.reportURL()
	want.Report.Retention, want.Report.Limits, want.Report.Timeout = c.Store.Retention, c.Policy.Limits, time.Second
	want.Admin = admin.Config{Backend: "memory", Retention: want.Filter.Retention, Mode: string(want.Filter.Mode), Policy: want.Filter.Policy}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plain(defaults()):\n got %+v\nwant %+v", got, want)
	}
}

// TestConfigKeysReachPackages: every key, set to a value other than its
// default, changes what plain gives the packages (or, for the keys only
// the commands read, the Config): no key is declared and then dropped.
func TestConfigKeysReachPackages(t *testing.T) {
	commandOnly := []string{"listen", "listen_mode", "log.level", "log.format", "listsync.every", "redis.tls.enabled",
		"redis.tls.ca_file", "redis.tls.cert_file", "redis.tls.key_file", "redis.tls.server_name",
		"http.listen", "http.max_connections", "http.max_connections_per_client", "http.read_header_timeout", "http.idle_timeout", "http.admin", "http.admin_token_file"}
	base := defaults()
	for _, k := range keys {
		c := defaults()
		v := k.val(&c)
		var err error
		switch v.get().(type) {
		case string, adminSetting:
			err = v.parse(v.String() + "x")
		case bool:
			err = v.parse(fmt.Sprint(!v.get().(bool)))
		case []string:
			err = v.parse("a@example.org")
		case map[string]int:
			err = v.parse("a@example.org=3")
		case map[string]policy.ListPolicy:
			err = v.parse("a@example.org=max_replies=3")
		case float64:
			err = v.parse("0.125")
		case time.Duration:
			err = v.parse((v.get().(time.Duration) + time.Second).String())
		default:
			err = v.parse("12345")
		}
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		if slices.Contains(commandOnly, k.name) {
			if reflect.DeepEqual(c, base) {
				t.Errorf("%s: setting it changed nothing", k.name)
			}
			continue
		}
		if reflect.DeepEqual(c.plain(), base.plain()) {
			t.Errorf("%s: setting it changed no package's config", k.name)
		}
	}
	names := map[string]bool{}
	flags := map[string]bool{}
	for _, k := range keys {
		if names[k.name] || k.flag != "" && flags[k.flag] {
			t.Errorf("%s: key or flag --%s declared twice", k.name, k.flag)
		}
		names[k.name], flags[k.flag] = true, k.flag != ""
		if k.oneOf != nil && !slices.Contains(k.oneOf, k.val(&base).String()) {
			t.Errorf("%s: default %q is not one of %v", k.name, k.val(&base).String(), k.oneOf)
		}
		if k.help == "" {
			t.Errorf("%s: no help", k.name)
		}
	}
	for _, r := range policy.LimitRules {
		if !names["policy."+r.Key] {
			t.Errorf("limit rule %s has no key policy.%s", r.Rule, r.Key)
		}
	}
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
