package admin

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/store"
)

// TestAdminAPIRefusesWithoutToken: what a local user without the token
// could otherwise do (allow a blocked thread, set mode off, shrink a list)
// is refused with 401 and changes nothing; a "by" in the request cannot
// name someone else: the event names the token's holder and the local
// user at the other end of the connection.
func TestAdminAPIRefusesWithoutToken(t *testing.T) {
	var published []events.Event
	d, err := NewDirect(Config{Backend: "memory", Retention: time.Hour, Mode: "enforce"}, store.NewMemory(), history.NewMemory(0),
		func(e events.Event) string { published = append(published, e); return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	const token = "a3f1c9e2b7d4058e6a1f3c2b9d8e7f60a3f1c9e2b7d4058e6a1f3c2b9d8e7f60"
	srv := httptest.NewServer(NewHandler(d, true, token, nil))
	defer srv.Close()
	// Each kind of wrong token comes from a loopback address of its own,
	// under the limit of wrong tokens per address (TestAdminAPILoginLimit).
	from := "127.0.0.1"
	do := func(method, path, body, auth string) (int, string) {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i, auth := range []string{"", "Bearer ", "Bearer wrong", "Basic " + token, "Bearer " + token[:63], token} {
		from = fmt.Sprintf("127.0.0.%d", 10+i)
		for _, req := range []struct{ method, path, body string }{
			{http.MethodPut, "/admin/mode", `{"mode":"off"}`},
			{http.MethodPut, "/admin/lists/all@example.org", `{"members":1}`},
			{http.MethodPut, "/admin/threads/0123456789abcdef/override", `{"override":"allow"}`},
			{http.MethodGet, "/admin/threads", ""},
		} {
			code, body := do(req.method, req.path, req.body, auth)
			if code != http.StatusUnauthorized || !strings.Contains(body, "admin token") {
				t.Errorf("%s %s with Authorization %q: %d %s, want 401 naming the admin token", req.method, req.path, auth, code, body)
			}
		}
	}
	from = "127.0.0.1"
	if code, body := do(http.MethodGet, "/admin/mode", "", "Bearer "+token); code != 200 || !strings.Contains(body, `"mode": "enforce"`) {
		t.Errorf("GET /admin/mode after the refused calls: %d %s, want enforce", code, body)
	}
	if lists, _ := d.Lists(context.Background()); len(lists) != 0 {
		t.Errorf("lists after the refused calls: %+v", lists)
	}

	if code, body := do(http.MethodPut, "/admin/mode", `{"mode":"off","by":"the boss"}`, "Bearer "+token); code != 400 || !strings.Contains(body, `unknown field \"by\"`) {
		t.Errorf("PUT /admin/mode with a by: %d %s, want 400", code, body)
	}
	if code, body := do(http.MethodPut, "/admin/mode", `{"mode":"monitor"}`, "Bearer "+token); code != 200 {
		t.Fatalf("PUT /admin/mode with the token: %d %s", code, body)
	}
	want := TokenLabel
	if u, err := user.Current(); err == nil {
		want += " (local user " + u.Username + ")"
	}
	if len(published) != 1 || published[0].By != want {
		t.Errorf("events %+v, want one by %q", published, want)
	}
}

// TestToken: the daemon makes the token file once, 0600; a file others
// may read is refused; a subcommand that cannot read it says why.
func TestToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "admin.token")
	tok, err := EnsureToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("EnsureToken: %q, %v", tok, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if again, err := EnsureToken(path); err != nil || again != tok {
		t.Errorf("EnsureToken again: %q, %v; want the same token", again, err)
	}
	if got, err := ReadToken(path); err != nil || got != tok {
		t.Errorf("ReadToken: %q, %v", got, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("EnsureToken of a 0644 file: %v, want a refusal", err)
	}
	if _, err := ReadToken(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("ReadToken of a missing file: %v", err)
	}
	if _, err := EnsureToken("/proc/stormguard/admin.token"); err == nil || !strings.Contains(err.Error(), "cannot create the admin token /proc/stormguard/admin.token") {
		t.Errorf("EnsureToken where it cannot be made: %v", err)
	}
	const denied = "cannot read the admin token /var/lib/stormguard/admin.token: permission denied — run as root or the stormguard user"
	if err := readTokenError("/var/lib/stormguard/admin.token", &fs.PathError{Op: "open", Path: "x", Err: fs.ErrPermission}); err.Error() != denied {
		t.Errorf("permission denied: %v", err)
	}
	if os.Geteuid() == 0 {
		return // root reads any file
	}
	if err := os.Chmod(path, 0o000); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "permission denied — run as root or the stormguard user") {
		t.Errorf("ReadToken of an unreadable file: %v", err)
	}
}

// TestAdminAPILoginLimit: past 5 wrong tokens from one address within a
// minute, the admin API answers 429, the right token too; another
// address is not affected.
func TestAdminAPILoginLimit(t *testing.T) {
	d, err := NewDirect(Config{Backend: "memory", Retention: time.Hour, Mode: "enforce"}, store.NewMemory(), history.NewMemory(0),
		func(events.Event) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	const token = "a3f1c9e2b7d4058e6a1f3c2b9d8e7f60a3f1c9e2b7d4058e6a1f3c2b9d8e7f60"
	h := NewHandler(d, true, token, nil)
	do := func(from, auth string) int {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9357/admin/mode", nil)
		req.RemoteAddr = from + ":40000"
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	codes := map[int]int{}
	for range 20 {
		codes[do("192.0.2.7", "Bearer wrong")]++
	}
	right := do("192.0.2.7", "Bearer "+token)
	t.Logf("20 wrong tokens from one address: %v; then the right one: %d", codes, right)
	if codes[401] != 5 || codes[429] != 15 || right != 429 {
		t.Errorf("20 wrong tokens: %v, then the right one %d; want 5 × 401, 15 × 429, then 429", codes, right)
	}
	if code := do("192.0.2.8", "Bearer "+token); code != 200 {
		t.Errorf("another address with the right token: %d", code)
	}
}
