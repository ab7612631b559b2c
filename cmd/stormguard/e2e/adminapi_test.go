package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// apiDo sends one request to a daemon's admin API and returns the status
// and body; pass bearer() in header for the admin token.
func apiDo(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOperatingAStormOnMemoryStore: the single-node default. A storm
// through a real Postfix into a daemon with the memory store, then every
// subcommand against that running daemon (its admin API): each changes the
// very next verdict, and the override and mode events go out through the
// daemon. store.refresh is an hour, so only the admin API's immediate
// re-read can explain a list or mode change taking effect.
func TestOperatingAStormOnMemoryStore(t *testing.T) {
	sink := smtpenv.StartSink(t)
	wh := startWebhook(t, nil)
	n := startNode(t, fmt.Sprintf("store:\n  backend: memory\n  refresh: 1h\nalerts:\n  webhook_url: %s\n  summary_every: 200ms\n", wh.URL), sink)
	n.log.wait(t, 0, "stormguard started", "admin_api=true")
	cfg := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+n.http+"\n")
	api := "http://" + n.http + "/admin"

	from := n.log.len()
	if out := mustRun(t, "lists", "set", "All-Staff@Example.org", "3000", "--config", cfg); !strings.Contains(out, "all-staff@example.org: 3000 members; the daemon uses it from the next message") {
		t.Errorf("lists set: %q", out)
	}
	n.log.wait(t, from, "site settings loaded", "lists=1")
	if out := mustRun(t, "lists", "--config", cfg); !strings.Contains(strings.Join(strings.Fields(out), " "), "all-staff@example.org 3000 memory") {
		t.Errorf("lists:\n%s", out)
	}

	const subject = "Quarterly all-hands"
	root := "mem-storm@example.org"
	thread := string(threadOf(root))
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	for i := 1; i <= 12; i++ {
		r := replyAll(t, n, i, root, staffList, subject)
		if (i <= 10 && !r.OK()) || (i > 10 && (r.Code != 550 || !strings.Contains(r.Text, thread))) {
			t.Fatalf("reply-all %d: %v", i, r)
		}
	}

	t.Run("storms --json and show", func(t *testing.T) {
		var views []admin.ThreadView
		if err := json.Unmarshal([]byte(mustRun(t, "storms", "--json", "--config", cfg)), &views); err != nil {
			t.Fatal(err)
		}
		if len(views) != 1 {
			t.Fatalf("storms --json: %+v, want the one storm", views)
		}
		v := views[0]
		if v.Thread != thread || !strings.EqualFold(v.Subject, subject) || v.OriginalSender != boss ||
			v.Replies != 12 || v.Accepted != 10 || v.Blocked != 2 || v.State != admin.StateBlocked || !v.BlockActive ||
			v.StormRule != "max_replies" || v.BlockExpires == nil || time.Until(*v.BlockExpires) < 5*time.Hour {
			t.Errorf("storms --json: %+v", v)
		}
		var shown admin.ThreadView
		if err := json.Unmarshal([]byte(mustRun(t, "show", thread, "--json", "--config", cfg)), &shown); err != nil {
			t.Fatal(err)
		}
		verdicts := map[string]string{}
		for _, x := range shown.Senders {
			verdicts[x.Sender] = x.Verdict + "/" + x.Status
		}
		if len(verdicts) != 13 || verdicts["user10@example.org"] != "allowed/counted" ||
			verdicts["user11@example.org"] != "blocked/crossed" || verdicts["user12@example.org"] != "blocked/blocked" {
			t.Errorf("show --json senders: %v", verdicts)
		}
		text := mustRun(t, "show", thread, "--config", cfg)
		for _, w := range []string{thread, "block expires", "user12@example.org", boss} {
			if !strings.Contains(text, w) {
				t.Errorf("show (text) lacks %q:\n%s", w, text)
			}
		}
		if table := mustRun(t, "storms", "--config", cfg); !strings.Contains(table, thread) || !strings.Contains(table, "blocked") {
			t.Errorf("storms table:\n%s", table)
		}
		// The API itself, as curl sees it.
		code, body := apiDo(t, http.MethodGet, api+"/threads?all=1&limit=5", "", bearer())
		if code != 200 || !strings.Contains(body, `"thread": "`+thread+`"`) {
			t.Errorf("GET /admin/threads?all=1&limit=5: %d %s", code, body)
		}
		if code, body := apiDo(t, http.MethodGet, api+"/threads/0123456789abcdef", "", bearer()); code != 404 || !strings.Contains(body, "unknown") {
			t.Errorf("GET an unknown thread: %d %s", code, body)
		}
	})

	next := 20
	reply := func() int {
		t.Helper()
		next++
		return replyAll(t, n, next, root, staffList, subject).Code
	}
	t.Run("allow --for 3s lets the next reply through, then expires", func(t *testing.T) { // 3s: as in TestOperatingAStorm
		out := mustRun(t, "allow", thread, "--for", "3s", "--config", cfg)
		if !strings.Contains(out, "allow for 3s") || !strings.Contains(out, "in force on the daemon") {
			t.Errorf("allow said %q", out)
		}
		e := wh.wait(t, func(e events.Event) bool { return e.Type == events.TypeOverride })
		if e.Thread != thread || e.Override != "allow" || e.Expires == nil || e.By != adminIdentity(t) || e.OriginalSender != boss {
			t.Errorf("override event %+v", e)
		}
		n.log.wait(t, 0, "event", "type=override", "thread="+thread) // the memory store's event outlet
		if c := reply(); c != 250 {
			t.Fatalf("reply after allow: %d, want 250", c)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			var v admin.ThreadView
			if err := json.Unmarshal([]byte(mustRun(t, "show", thread, "--json", "--config", cfg)), &v); err != nil {
				t.Fatal(err)
			}
			if v.Override == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the allow override is still there after 10s: %+v", v)
			}
			time.Sleep(50 * time.Millisecond) // polling a 3s TTL, bounded above
		}
		if c := reply(); c != 550 {
			t.Fatalf("reply after the allow expired: %d, want 550", c)
		}
	})
	t.Run("reset starts counting afresh", func(t *testing.T) {
		mustRun(t, "reset", thread, "--config", cfg)
		if e := wh.wait(t, func(e events.Event) bool { return e.Type == events.TypeOverride && e.Override == "reset" }); e.Thread != thread {
			t.Errorf("reset event %+v", e)
		}
		if c := reply(); c != 250 {
			t.Fatalf("reply after reset: %d, want 250", c)
		}
		if out := mustRun(t, "storms", "--json", "--config", cfg); strings.TrimSpace(out) != "[]" {
			t.Errorf("storms after reset: %s, want none", out)
		}
		if out := mustRun(t, "storms", "--all", "--json", "--config", cfg); !strings.Contains(out, thread) {
			t.Errorf("storms --all after reset lacks the thread: %s", out)
		}
	})
	t.Run("block refuses the next reply; DELETE override lifts it", func(t *testing.T) {
		mustRun(t, "block", thread, "--config", cfg)
		if c := reply(); c != 550 {
			t.Fatalf("reply after block: %d, want 550", c)
		}
		code, body := apiDo(t, http.MethodDelete, api+"/threads/"+thread+"/override", "", bearer())
		if code != 200 || !strings.Contains(body, `"override": "none"`) {
			t.Fatalf("DELETE override: %d %s", code, body)
		}
		if e := wh.wait(t, func(e events.Event) bool { return e.Type == events.TypeOverride && e.Override == "none" }); e.By != adminIdentity(t) ||
			!strings.Contains(e.Text, "override removed by "+adminIdentity(t)) {
			t.Errorf("removal event %+v", e)
		}
		if c := reply(); c != 250 {
			t.Fatalf("reply after DELETE override: %d, want 250", c)
		}
	})
	t.Run("mode monitor passes the next refused reply; default restores", func(t *testing.T) {
		mustRun(t, "block", thread, "--config", cfg)
		if out := mustRun(t, "mode", "monitor", "--config", cfg); !strings.Contains(out, "site mode: monitor") {
			t.Errorf("mode monitor said %q", out)
		}
		if e := wh.wait(t, func(e events.Event) bool { return e.Type == events.TypeMode }); e.Mode != "monitor" {
			t.Errorf("mode event %+v", e)
		}
		if c := reply(); c != 250 {
			t.Fatalf("reply in monitor mode: %d, want 250", c)
		}
		if out := mustRun(t, "mode", "--config", cfg); !strings.HasPrefix(out, "monitor (set on the daemon") {
			t.Errorf("mode: %q", out)
		}
		mustRun(t, "mode", "default", "--config", cfg)
		if out := mustRun(t, "mode", "--config", cfg); !strings.HasPrefix(out, "enforce (the config's mode") {
			t.Errorf("mode after default: %q", out)
		}
		if c := reply(); c != 550 {
			t.Fatalf("reply after mode default: %d, want 550 (override block)", c)
		}
	})
	t.Run("lists delete makes the next reply small", func(t *testing.T) {
		if out := mustRun(t, "lists", "delete", staffList, "--config", cfg); !strings.Contains(out, "removed from the daemon's memory store") {
			t.Errorf("lists delete: %q", out)
		}
		if c := reply(); c != 250 { // an audience of 2 now: not counted, not refused
			t.Fatalf("reply to an unregistered list: %d, want 250", c)
		}
		if code, _, errb := run(t, "lists", "delete", staffList, "--config", cfg); code == 0 || !strings.Contains(errb, "not registered") {
			t.Errorf("deleting an absent list: exit %d %q", code, errb)
		}
		if out := mustRun(t, "lists", "--config", cfg); !strings.Contains(out, "no lists registered") {
			t.Errorf("lists after delete: %q", out)
		}
	})
	t.Run("errors come back as one line", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"show", "0123456789abcdef"}, "thread 0123456789abcdef: unknown: no message of it recorded in the last 24h0m0s"},
			{[]string{"allow", "0123456789abcdef", "--for", "1h"}, "thread 0123456789abcdef: unknown"},
			{[]string{"reset", "0123456789abcdef"}, "unknown"},
		} {
			code, _, errb := run(t, append(tc.args, "--config", cfg)...)
			if code == 0 || !strings.Contains(errb, tc.want) || strings.Count(strings.TrimSpace(errb), "\n") != 0 {
				t.Errorf("%v: exit %d, stderr %q; want one line with %q", tc.args, code, errb, tc.want)
			}
		}
		for _, tc := range []struct{ method, path, body, want string }{
			{http.MethodPut, "/threads/" + thread + "/override", `{"override":"maybe"}`, `want \"allow\" or \"block\"`},
			{http.MethodPut, "/threads/" + thread + "/override", `{"override":"allow","for":"soon"}`, "want a duration"},
			{http.MethodPut, "/threads/nope/override", `{"override":"allow"}`, "bad thread id"},
			{http.MethodPut, "/lists/nobody", `{"members":5}`, "want local@domain"},
			{http.MethodPut, "/mode", `{"mode":"panic"}`, "want enforce, monitor, off or default"},
			{http.MethodPut, "/mode", `{"mood":"off"}`, "unknown field"},
		} {
			if code, body := apiDo(t, tc.method, api+tc.path, tc.body, bearer()); code != 400 || !strings.Contains(body, tc.want) {
				t.Errorf("%s %s %s: %d %s, want 400 with %q", tc.method, tc.path, tc.body, code, body, tc.want)
			}
		}
	})
}

// TestAdminAPIExposure: the admin API is served on a loopback listener by
// default, not on a wildcard one unless http.admin is true, never with
// http.admin false; a browser page cannot drive it.
func TestAdminAPIExposure(t *testing.T) {
	t.Run("loopback: served, but not to other origins or host names", func(t *testing.T) {
		d := startDaemon(t, "")
		api := "http://" + d.http + "/admin"
		if code, body := apiDo(t, http.MethodGet, api+"/mode", "", bearer()); code != 200 || !strings.Contains(body, `"mode": "enforce"`) {
			t.Errorf("GET /admin/mode: %d %s", code, body)
		}
		if code, body := apiDo(t, http.MethodPut, api+"/mode", `{"mode":"off"}`,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Authorization": "Bearer " + testToken}); code != 403 || !strings.Contains(body, "cross-origin") {
			t.Errorf("cross-origin PUT /admin/mode: %d %s, want 403", code, body)
		}
		if code, body := apiDo(t, http.MethodGet, api+"/mode", "", map[string]string{"Host": "evil.example:9357", "Authorization": "Bearer " + testToken}); code != 403 ||
			!strings.Contains(body, "loopback names only") {
			t.Errorf("GET /admin/mode with a rebound host name: %d %s, want 403", code, body)
		}
		if code, body := apiDo(t, http.MethodGet, api+"/nothing", "", bearer()); code != 404 || !strings.Contains(body, "no admin API endpoint") {
			t.Errorf("GET /admin/nothing: %d %s", code, body)
		}
		if code, body := apiDo(t, http.MethodGet, api+"/mode", "", bearer()); code != 200 || !strings.Contains(body, `"mode": "enforce"`) {
			t.Errorf("the refused requests changed the mode: %d %s", code, body)
		}
	})
	t.Run("wildcard listener: off by default, on with http.admin true", func(t *testing.T) {
		port := testenv.FreePort(t)
		d := startDaemonHTTP(t, fmt.Sprintf("0.0.0.0:%d", port), "", "")
		d.log.wait(t, 0, "stormguard started", "admin_api=false")
		code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/admin/mode", port))
		if code != 403 || !strings.Contains(body, "not a loopback address") {
			t.Errorf("GET /admin/mode on 0.0.0.0 with http.admin auto: %d %s, want 403", code, body)
		}
		if code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)); code != 200 {
			t.Errorf("/metrics: %d", code)
		}
		// A subcommand whose config says true while the daemon's says auto
		// prints the daemon's reason.
		mismatch := writeConfig(t, fmt.Sprintf("http:\n  listen: 0.0.0.0:%d\n  admin: true\n", port))
		if code, _, errb := run(t, "mode", "--config", mismatch); code == 0 || !strings.Contains(errb, "the daemon does not serve the admin API: http.listen") {
			t.Errorf("mode against a daemon without the admin API: exit %d %q", code, errb)
		}

		port = testenv.FreePort(t)
		startDaemonHTTP(t, fmt.Sprintf("0.0.0.0:%d", port), "  admin: true\n", "")
		on := writeConfig(t, fmt.Sprintf("http:\n  listen: 0.0.0.0:%d\n  admin: true\n", port))
		mustRun(t, "mode", "monitor", "--config", on) // asked on 127.0.0.1
		if out := mustRun(t, "mode", "--config", on); !strings.HasPrefix(out, "monitor") {
			t.Errorf("mode: %q", out)
		}
	})
	t.Run("http.admin false", func(t *testing.T) {
		d := startDaemonHTTP(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "  admin: false\n", "")
		if code, body := get(t, "http://"+d.http+"/admin/threads"); code != 403 || !strings.Contains(body, "http.admin is false") {
			t.Errorf("GET /admin/threads with http.admin false: %d %s", code, body)
		}
	})
}
