package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/internal/testenv"
)

// bearer is the header that authenticates an admin API call.
func bearer() map[string]string { return map[string]string{"Authorization": "Bearer " + testToken} }

// adminIdentity is what the events' by says for a command this test's user runs.
func adminIdentity(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return admin.TokenLabel + " (local user " + u.Username + ")"
}

// TestAdminAPIAuthentication: a daemon's admin API refuses calls without
// the token or with another one (401), the subcommands send it, a "by" in
// the request cannot name someone else, the daemon makes its token file
// at the first start, and a subcommand that cannot read it says so.
func TestAdminAPIAuthentication(t *testing.T) {
	wh := startWebhook(t, nil)
	tokenFile := filepath.Join(t.TempDir(), "state", "admin.token")
	d := startDaemon(t, fmt.Sprintf("alerts:\n  webhook_url: %s\n", wh.URL)) // the package's token (TestMain)
	api := "http://" + d.http + "/admin"
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer " + testToken + "x"}} {
		if code, body := apiDo(t, http.MethodPut, api+"/mode", `{"mode":"off"}`, h); code != 401 || !strings.Contains(body, "admin token") {
			t.Errorf("PUT /admin/mode with %v: %d %s, want 401", h, code, body)
		}
	}
	if code, body := apiDo(t, http.MethodGet, api+"/mode", "", bearer()); code != 200 || !strings.Contains(body, `"mode": "enforce"`) {
		t.Errorf("mode after the refused calls: %d %s", code, body)
	}
	cfg := writeConfig(t, "http:\n  listen: "+d.http+"\n")
	if out := mustRun(t, "mode", "monitor", "--config", cfg); !strings.Contains(out, "site mode: monitor") {
		t.Errorf("mode monitor: %q", out)
	}
	if e := wh.wait(t, func(e events.Event) bool { return e.Type == events.TypeMode }); e.By != adminIdentity(t) {
		t.Errorf("mode event by %q, want %q", e.By, adminIdentity(t))
	}
	if code, body := apiDo(t, http.MethodPut, api+"/mode", `{"mode":"off","by":"the boss"}`, bearer()); code != 400 || !strings.Contains(body, "unknown field") {
		t.Errorf("PUT /admin/mode with a by: %d %s, want 400", code, body)
	}

	// A daemon with a token file of its own makes it; a subcommand
	// pointed elsewhere cannot read it and says so.
	pkgToken := os.Getenv("STORMGUARD_HTTP_ADMIN_TOKEN_FILE")
	t.Setenv("STORMGUARD_HTTP_ADMIN_TOKEN_FILE", "") // empty: the config files' say
	d2 := startDaemonHTTP(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "  admin_token_file: "+tokenFile+"\n", "")
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file made at the first start: %v, %v; want mode 0600", fi, err)
	}
	own := writeConfig(t, "http:\n  listen: "+d2.http+"\n  admin_token_file: "+tokenFile+"\n")
	if out := mustRun(t, "mode", "--config", own); !strings.HasPrefix(out, "enforce") {
		t.Errorf("mode with the daemon's own token file: %q", out)
	}
	if code, _, errb := run(t, "mode", "--config", writeConfig(t, "http:\n  listen: "+d2.http+"\n  admin_token_file: "+pkgToken+"\n")); code == 0 || !strings.Contains(errb, "admin token refused") {
		t.Errorf("mode with another daemon's token: exit %d %q", code, errb)
	}
	missing := writeConfig(t, "http:\n  listen: "+d2.http+"\n  admin_token_file: "+filepath.Join(t.TempDir(), "none")+"\n")
	if code, _, errb := run(t, "mode", "--config", missing); code == 0 || !strings.Contains(errb, "cannot read the admin token") {
		t.Errorf("mode without a token file: exit %d %q", code, errb)
	}
	port := testenv.FreePort(t)
	bad := writeConfig(t, fmt.Sprintf("listen: inet:127.0.0.1:%d\nhttp:\n  listen: 127.0.0.1:%d\n  admin_token_file: /proc/stormguard/admin.token\n", testenv.FreePort(t), port))
	if code, _, errb := run(t, "serve", "--config", bad); code == 0 || !strings.Contains(errb, "http.admin_token_file: cannot create the admin token /proc/stormguard/admin.token") {
		t.Errorf("serve where the token cannot be made: exit %d %q", code, errb)
	}
}
