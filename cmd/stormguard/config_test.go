package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stormguard.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

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
		{"bad backend", "store:\n  backend: etcd\n", "", "store.backend"},
		{"bad on_error", "store:\n  on_error: ignore\n", "", "store.on_error"},
		{"negative", "policy:\n  min_audience: -1\n", "", "min_audience"},
		{"bad env", "", "STORMGUARD_POLICY_MAX_REPLIES=many", `policy.max_replies: "many" is not a whole number`},
		{"bad env duration", "", "STORMGUARD_REDIS_TIMEOUT=fast", `redis.timeout: "fast" is not a duration`},
		{"bad reject text", "policy:\n  reject_text: go away\n", "", "policy.reject_text"},
		{"bad mode", "mode: panic\n", "", "mode"},
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

func TestServeRejectsInvalidConfigWithExitCode(t *testing.T) {
	path := writeConfig(t, "policy:\n  max_replies: lots\n")
	var out, errb bytes.Buffer
	code := execute(context.Background(), []string{"serve", "--config", path}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "max_replies") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestCheckPrintsSources(t *testing.T) {
	path := writeConfig(t, "policy:\n  max_replies: 5\n")
	t.Setenv("STORMGUARD_POLICY_WINDOW", "15m")
	var out, errb bytes.Buffer
	if code := execute(context.Background(), []string{"check", "--config", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`(?m)^policy\.max_replies\s+5\s+file$`, `(?m)^policy\.window\s+15m\s+env STORMGUARD_POLICY_WINDOW$`, `(?m)^policy\.block_for\s+6h0m0s\s+default$`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("check output does not match %s:\n%s", want, out.String())
		}
	}
}
