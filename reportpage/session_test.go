package reportpage

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination the server's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// postForm posts form to u through c and returns the status, following
// redirects.
func postForm(t *testing.T, c *http.Client, u string, form url.Values) int {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// csrfOf is the CSRF token in a page's forms.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

// TestLogoutEndsSession: after logout, the session's cookie, replayed as
// it was, no longer logs in: its actions are refused and the page shows
// no actions; a new login works again.
func TestLogoutEndsSession(t *testing.T) {
	h := &fakeHistory{rows: rows()}
	srv := newServer(t, h, true)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if code := postForm(t, c, srv.URL+"/login", url.Values{"token": {token}}); code != 200 {
		t.Fatalf("login: %d", code)
	}
	u, _ := url.Parse(srv.URL)
	old := jar.Cookies(u)
	if len(old) != 1 {
		t.Fatalf("cookies after login: %v", old)
	}
	_, body := get(t, c, srv.URL+"/thread/00000000000000a1")
	csrf := csrfOf(t, body)
	if code := postForm(t, c, srv.URL+"/logout", url.Values{"csrf": {csrf}}); code != 200 {
		t.Fatalf("logout: %d", code)
	}

	// The stolen or kept cookie, replayed after logout.
	replay, _ := cookiejar.New(nil)
	replay.SetCookies(u, old)
	rc := &http.Client{Jar: replay}
	code := postForm(t, rc, srv.URL+"/thread/00000000000000a1/action", url.Values{"verb": {"allow"}, "csrf": {csrf}})
	_, page := get(t, rc, srv.URL+"/thread/00000000000000a1")
	t.Logf("the session's cookie after logout: action %d, page offers actions %v", code, strings.Contains(page, `id="allow"`))
	if code != http.StatusForbidden || strings.Contains(page, `id="allow"`) {
		t.Errorf("after logout the old cookie still works: action %d", code)
	}
	if d := h.done(); len(d) != 0 {
		t.Errorf("an action was done with a logged-out session: %v", d)
	}
	if code := postForm(t, c, srv.URL+"/login", url.Values{"token": {token}}); code != 200 {
		t.Fatalf("login again: %d", code)
	}
	if _, body := get(t, c, srv.URL+"/thread/00000000000000a1"); !strings.Contains(body, `id="allow"`) {
		t.Errorf("no actions after logging in again")
	}
}

// TestLoginRateLimit: 20 wrong tokens from one address: the first 5 get
// 403, the rest 429 (the right token too, until the window ends), and the
// log has one summarised line, not one per failure; another address still
// logs in; after the window the address may try again.
func TestLoginRateLimit(t *testing.T) {
	h := &fakeHistory{rows: rows()}
	var logs syncBuffer
	clock := now
	var mu sync.Mutex
	handler, err := New(Config{History: h, Actions: h, Token: token, Loopback: true,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	login := func(from, tok string) int {
		req := httptest.NewRequest("POST", "http://127.0.0.1:9357/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = from + ":40000"
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w.Code
	}
	codes := map[int]int{}
	for range 20 {
		codes[login("192.0.2.7", "wrong"+token)]++
	}
	right := login("192.0.2.7", token)
	lines := strings.Count(logs.String(), "\n")
	t.Logf("20 wrong tokens from one address: %v; then the right one: %d; %d log lines:\n%s", codes, right, lines, logs.String())
	if codes[403] != 5 || codes[429] != 15 || right != 429 {
		t.Errorf("wrong tokens: %v, then the right one %d; want 5 × 403, 15 × 429, then 429", codes, right)
	}
	if lines != 1 {
		t.Errorf("%d log lines for 20 wrong tokens, want 1", lines)
	}
	if code := login("192.0.2.8", token); code != http.StatusSeeOther {
		t.Errorf("another address with the right token: %d", code)
	}
	mu.Lock()
	clock = clock.Add(time.Minute)
	mu.Unlock()
	if code := login("192.0.2.7", "wrong"+token); code != http.StatusForbidden {
		t.Errorf("a wrong token after the window: %d, want 403", code)
	}
	if lines := strings.Count(logs.String(), "\n"); lines != 2 || !strings.Contains(logs.String(), "wrong_tokens=5 rate_limited=16") {
		t.Errorf("after the window, want a second line summing it up (wrong_tokens=5 rate_limited=16):\n%s", logs.String())
	}
	if code := login("192.0.2.7", token); code != http.StatusSeeOther {
		t.Errorf("the right token after the window: %d", code)
	}
}

// TestRevokedSessionsBounded: the table of revoked sessions never holds
// more than maxRevoked; past it the key is drawn again, which ends every
// session, the revoked ones too.
func TestRevokedSessionsBounded(t *testing.T) {
	s := newSessions(token)
	req := func(sid string) *http.Request {
		r := httptest.NewRequest("GET", "http://127.0.0.1:9357/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
		return r
	}
	live, first := s.newSession(now), s.newSession(now)
	s.revoke(first, now)
	for range maxRevoked {
		s.revoke(s.newSession(now), now)
	}
	if n := len(s.revoked); n > maxRevoked {
		t.Errorf("%d revoked sessions kept, want at most %d", n, maxRevoked)
	}
	for name, sid := range map[string]string{"a live session": live, "the first revoked": first} {
		if _, ok := s.valid(req(sid), now); ok {
			t.Errorf("%s is valid after the table filled", name)
		}
	}
	if fresh := s.newSession(now); !func() bool { _, ok := s.valid(req(fresh), now); return ok }() {
		t.Errorf("a new session is not valid")
	}
}
