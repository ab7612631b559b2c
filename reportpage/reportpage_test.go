package reportpage

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/policy"
)

// fakeHistory is an in-test admin.HistoryAPI and Actor: the rows it is given,
// and the overrides it was asked for.
type fakeHistory struct {
	rows []admin.StormView
	mu   sync.Mutex
	did  []string // "thread verb by"
}

func (h *fakeHistory) Storms(_ context.Context, since time.Time, near bool, limit int) ([]admin.StormView, error) {
	var out []admin.StormView
	for _, v := range h.rows {
		if !v.LastSeen.Before(since) && (near || v.Kind == admin.KindStorm) {
			out = append(out, v)
		}
	}
	return out, nil
}

func (h *fakeHistory) Storm(_ context.Context, t policy.ThreadID) (admin.StormView, error) {
	for _, v := range h.rows {
		if v.Thread == string(t) {
			return v, nil
		}
	}
	return admin.StormView{}, &admin.Error{Status: http.StatusNotFound, Msg: fmt.Sprintf("thread %s: unknown", t)}
}

func (h *fakeHistory) Queued(context.Context, policy.ThreadID) ([]history.QueueRef, error) {
	return nil, nil
}

func (h *fakeHistory) Override(_ context.Context, t policy.ThreadID, verb string, _ time.Duration, by string) (admin.OverrideResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.did = append(h.did, fmt.Sprintf("%s %s %s", t, verb, by))
	return admin.OverrideResult{Thread: string(t), Override: verb}, nil
}

func (h *fakeHistory) done() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.did...)
}

var (
	now     = time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	token   = strings.Repeat("ab", 20)
	hostile = "<script>window.pwned=1</script><b>Q4</b>\r\nBcc: x@y\x1b[31m\u202e"
)

func at(d time.Duration) *time.Time { t := now.Add(-d); return &t }

func rows() []admin.StormView {
	return []admin.StormView{
		{Thread: "00000000000000a1", Kind: admin.KindStorm, Subject: hostile, OriginalSender: "=HYPERLINK(\"x\")<i>@evil",
			Lists: []string{"all@example.org"}, Audience: 3000, FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-time.Hour),
			StormAt: at(90 * time.Minute), StormRule: "max_replies", Accepted: 10, Refused: 4, Saved: 12000, State: admin.StateBlocked,
			Senders: []admin.SenderView{{Sender: "u1@example.org", Status: "counted", Verdict: "allowed"}, {Sender: "u11@example.org", Status: "crossed", Verdict: "blocked"}},
			Queued: []history.QueueRef{{Node: "mx1", ID: "4XyZ1", Kind: "original", Sender: "boss@example.org", Status: history.QueueAccepted, Time: now.Add(-2 * time.Hour)},
				{Node: "mx2", ID: "4XyZ2", Kind: "reply", Sender: "u1@example.org", Status: history.QueueAccepted, Time: now.Add(-100 * time.Minute)}}},
		{Thread: "00000000000000b2", Kind: admin.KindNearMiss, Subject: "Lunch", OriginalSender: "hr@example.org", Audience: 2500,
			FirstSeen: now.Add(-5 * time.Hour), LastSeen: now.Add(-4 * time.Hour), NearMissAt: at(4*time.Hour + 30*time.Minute), Accepted: 5},
		{Thread: "00000000000000c3", Kind: admin.KindStorm, Subject: "Old", OriginalSender: "a@example.org", Audience: 1000,
			FirstSeen: now.Add(-50 * 24 * time.Hour), LastSeen: now.Add(-50 * 24 * time.Hour), StormAt: at(50 * 24 * time.Hour), Refused: 2, Saved: 2000},
	}
}

func newServer(t *testing.T, h *fakeHistory, actions bool) *httptest.Server {
	t.Helper()
	cfg := Config{History: h, Loopback: true, Now: func() time.Time { return now }}
	if actions {
		cfg.Actions, cfg.Token = h, token
	}
	handler, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOverviewShowsRangeEscaped(t *testing.T) {
	srv := newServer(t, &fakeHistory{rows: rows()}, false)
	resp, body := get(t, srv.Client(), srv.URL+"/?range=24h")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{
		`data-thread="00000000000000a1" data-kind="storm"`, `data-thread="00000000000000b2" data-kind="near_miss"`,
		`&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;b&gt;Q4&lt;/b&gt;\r\nBcc: x@y\x1b[31m\u202e`,
		`<b id="total-storms">1</b>`, `<b id="total-near-misses">1</b>`, `<b id="total-refused">4</b>`, `<b id="total-saved">12000</b>`,
		`href="/report.csv?range=24h&amp;rows=all"`, `<script src="/static/chart.umd.min.js"></script>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	for _, bad := range []string{"<script>window", "<b>Q4", "\x1b", "\r\nBcc", "\u202e", "00000000000000c3"} {
		if strings.Contains(body, bad) {
			t.Errorf("overview has %q raw (or a row outside the range)", bad)
		}
	}
	if strings.Count(body, "<script>") > 0 {
		t.Errorf("inline script on the page")
	}
	if resp, _ := get(t, srv.Client(), srv.URL+"/?range=2y"); resp.StatusCode != 400 {
		t.Errorf("range=2y: %d, want 400", resp.StatusCode)
	}
	if resp, body := get(t, srv.Client(), srv.URL+"/?range=90d"); !strings.Contains(body, "00000000000000c3") || resp.StatusCode != 200 {
		t.Errorf("90d lacks the 50-day-old storm")
	}
}

func TestSummarizeBuckets(t *testing.T) {
	r, _ := parseRange("3h")
	o := Summarize(rows(), r, now)
	// 07:30 to 10:30: buckets 07, 08, 09, 10.
	if len(o.Buckets) != 4 || o.Buckets[0].Label != "12-01 07:00" || o.Buckets[3].Label != "12-01 10:00" {
		t.Fatalf("3h buckets: %+v", o.Buckets)
	}
	// The storm blocked at 09:00; the near miss (06:00) is before the range.
	if b := o.Buckets[2]; b.Storms != 1 || b.Refused != 4 || b.Saved != 12000 {
		t.Errorf("09:00 bucket %+v", b)
	}
	sum := 0
	for _, b := range o.Buckets {
		sum += b.Storms + b.NearMisses
	}
	if sum != 1 {
		t.Errorf("3h: %d points, want the storm's 1", sum)
	}
	r, _ = parseRange("90d")
	o = Summarize(rows(), r, now)
	if len(o.Buckets) != 91 || o.Buckets[90].Label != "2026-12-01" || o.Storms != 2 || o.NearMisses != 1 {
		t.Fatalf("90d: %d buckets, last %+v, storms %d, near misses %d", len(o.Buckets), o.Buckets[len(o.Buckets)-1], o.Storms, o.NearMisses)
	}
	if b := o.Buckets[90]; b.Storms != 1 || b.NearMisses != 1 {
		t.Errorf("today's bucket %+v", b)
	}
	if b := o.Buckets[40]; b.Storms != 1 || b.Refused != 2 || b.Label != "2026-10-12" {
		t.Errorf("50 days ago bucket %+v", b)
	}
}

func TestCSVIsWhatIsOnScreenDefused(t *testing.T) {
	srv := newServer(t, &fakeHistory{rows: rows()}, false)
	resp, body := get(t, srv.Client(), srv.URL+"/report.csv?range=24h")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || strings.Join(recs[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("csv: %q", recs)
	}
	storm := recs[1]
	if storm[0] != "00000000000000a1" || storm[1] != "storm" || storm[11] != "4" || storm[13] != "12000" ||
		storm[2] != `<script>window.pwned=1</script><b>Q4</b>\r\nBcc: x@y\x1b[31m\u202e` || storm[3] != `'=HYPERLINK("x")<i>@evil` {
		t.Errorf("storm record %q", storm)
	}
	if recs[2][1] != "near miss" {
		t.Errorf("near miss record %q", recs[2])
	}
	if strings.ContainsAny(body, "\x1b\r") {
		t.Errorf("csv carries a control character raw")
	}
}

func TestThreadPage(t *testing.T) {
	srv := newServer(t, &fakeHistory{rows: rows()}, true)
	resp, body := get(t, srv.Client(), srv.URL+"/thread/00000000000000A1")
	if resp.StatusCode != 200 {
		t.Fatalf("thread: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{"Node mx1", "Node mx2", "4XyZ1", "4XyZ2", "u11@example.org", `<td>blocked</td>`,
		`id="counts">10 / 4 / 0<`, `href="/login?next=/thread/00000000000000a1"`, "&lt;script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("thread page lacks %s", want)
		}
	}
	if strings.Contains(body, `id="allow"`) {
		t.Errorf("allow button shown before logging in")
	}
	if resp, _ := get(t, srv.Client(), srv.URL+"/thread/0123456789abcdef"); resp.StatusCode != 404 {
		t.Errorf("unknown thread: %d, want 404", resp.StatusCode)
	}
	if resp, _ := get(t, srv.Client(), srv.URL+"/thread/<x>"); resp.StatusCode != 400 {
		t.Errorf("bad thread id: %d, want 400", resp.StatusCode)
	}
	// Without the admin API, no actions and no login.
	ro := newServer(t, &fakeHistory{rows: rows()}, false)
	if _, body := get(t, ro.Client(), ro.URL+"/thread/00000000000000a1"); strings.Contains(body, "Log in") || strings.Contains(body, "/action") {
		t.Errorf("read-only thread page offers actions")
	}
}

// TestActionsNeedSessionAndCSRF: a POST without a session, or with one but
// without its CSRF token, gets 403 and changes nothing; the page's own
// form after logging in does the override, named By.
func TestActionsNeedSessionAndCSRF(t *testing.T) {
	h := &fakeHistory{rows: rows()}
	srv := newServer(t, h, true)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	action := srv.URL + "/thread/00000000000000a1/action"
	post := func(u string, form url.Values) *http.Response {
		t.Helper()
		resp, err := c.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post(action, url.Values{"verb": {"allow"}}); r.StatusCode != 403 {
		t.Errorf("POST without session: %d", r.StatusCode)
	}
	if r := post(srv.URL+"/login", url.Values{"token": {"wrong" + token}, "next": {"/thread/00000000000000a1"}}); r.StatusCode != 403 {
		t.Errorf("login with a wrong token: %d", r.StatusCode)
	}
	if r := post(srv.URL+"/login", url.Values{"token": {token}, "next": {"//evil.example/"}}); r.StatusCode != 200 || r.Request.URL.Path != "/" {
		t.Errorf("login: %d at %s, want the overview (an off-site next ignored)", r.StatusCode, r.Request.URL)
	}
	u, _ := url.Parse(srv.URL)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != sessionCookie {
		t.Fatalf("cookies after login: %v", cookies)
	}
	if r := post(action, url.Values{"verb": {"allow"}}); r.StatusCode != 403 {
		t.Errorf("POST with session, without CSRF: %d", r.StatusCode)
	}
	if r := post(action, url.Values{"verb": {"allow"}, "csrf": {"forged"}}); r.StatusCode != 403 {
		t.Errorf("POST with a forged CSRF token: %d", r.StatusCode)
	}
	if d := h.done(); len(d) != 0 {
		t.Fatalf("refused POSTs changed something: %v", d)
	}
	_, body := get(t, c, srv.URL+"/thread/00000000000000a1")
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok || !strings.Contains(body, `id="allow"`) {
		t.Fatalf("no allow form after login:\n%s", body)
	}
	csrfTok, _, _ := strings.Cut(rest, `"`)
	r := post(action, url.Values{"verb": {"allow"}, "csrf": {csrfTok}})
	if r.StatusCode != 200 || r.Request.URL.RawQuery != "done=allow" {
		t.Errorf("allow: %d at %s", r.StatusCode, r.Request.URL)
	}
	if d := h.done(); len(d) != 1 || d[0] != "00000000000000a1 allow "+By {
		t.Errorf("overrides done: %v", d)
	}
	// A session from another token (another daemon), or from this token
	// before a restart, is not ours; an expired one is not valid.
	mine := newSessions(token)
	for name, other := range map[string]*sessions{"another token": newSessions(strings.Repeat("cd", 20)), "a restart": newSessions(token)} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: other.newSession(now)})
		if _, ok := mine.valid(req, now); ok {
			t.Errorf("a session from %s is valid", name)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: mine.newSession(now)})
	if _, ok := mine.valid(req, now); !ok {
		t.Errorf("a fresh session is not valid")
	}
	if _, ok := mine.valid(req, now.Add(sessionTTL)); ok {
		t.Errorf("an expired session is valid")
	}
}

func TestCookieAndHost(t *testing.T) {
	h := &fakeHistory{rows: rows()}
	handler, err := New(Config{History: h, Actions: h, Token: token, Loopback: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "http://127.0.0.1:9357/login", strings.NewReader("token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, req)
	c := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Secure {
		t.Errorf("login: %d cookies %+v", w.Code, c)
	}
	req = httptest.NewRequest("GET", "http://attacker.example:9357/", nil)
	w = httptest.NewRecorder()
	handler.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Errorf("non-loopback Host on a loopback listener: %d", w.Code)
	}
	// A cross-origin form POST is refused before its token is looked at.
	req = httptest.NewRequest("POST", "http://127.0.0.1:9357/login", strings.NewReader("token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	w = httptest.NewRecorder()
	handler.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Errorf("cross-site login: %d", w.Code)
	}
}

// TestChartJSIsThePackagedOne: the vendored Chart.js is byte for byte the
// npm package's (static/README.md says how it was taken).
func TestChartJSIsThePackagedOne(t *testing.T) {
	b, err := os.ReadFile("static/chart.umd.min.js")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("static/chart.umd.min.js.sha256")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != strings.TrimSpace(string(want)) {
		t.Errorf("static/chart.umd.min.js sha256 %s, want %s", got, want)
	}
	if !strings.Contains(string(b[:200]), "Chart.js v4.6.1") {
		t.Errorf("not Chart.js 4.6.1")
	}
}

// storms1000 is a history of 1,000 storms and near misses over 90 days.
func storms1000() []admin.StormView {
	out := make([]admin.StormView, 1000)
	for i := range out {
		v := rows()[i%2]
		v.Thread = fmt.Sprintf("%016x", i+1)
		d := time.Duration(i) * 2 * time.Hour
		v.FirstSeen, v.LastSeen = now.Add(-d-time.Hour), now.Add(-d)
		if v.StormAt != nil {
			v.StormAt = at(d)
		} else {
			v.NearMissAt = at(d)
		}
		out[i] = v
	}
	return out
}

func BenchmarkOverview1000(b *testing.B) {
	handler, err := New(Config{History: &fakeHistory{rows: storms1000()}, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest("GET", "/?range=90d&rows=all", nil))
		if w.Code != 200 || strings.Count(w.Body.String(), "<tr data-thread") != 1000 {
			b.Fatalf("%d, %d rows", w.Code, strings.Count(w.Body.String(), "<tr data-thread"))
		}
	}
}
