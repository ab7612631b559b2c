package e2e

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
)

// writeConfig writes body to a stormguard.yaml in a temporary directory
// and returns its path.
func writeConfig(t *testing.T, body string) string { return testenv.ConfigFile(t, body) }

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
	t.Setenv("STORMGUARD_REDIS_PASSWORD", "hunter2")
	var out, errb bytes.Buffer
	if code := execute(context.Background(), []string{"check", "--config", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`(?m)^policy\.max_replies\s+5\s+file$`, `(?m)^policy\.window\s+15m0s\s+env STORMGUARD_POLICY_WINDOW$`, `(?m)^policy\.block_for\s+6h0m0s\s+default$`,
		`(?m)^redis\.password\s+\*{8}\s+env STORMGUARD_REDIS_PASSWORD$`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("check output does not match %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("check prints the Redis password:\n%s", out.String())
	}
}
