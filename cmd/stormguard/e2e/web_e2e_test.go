package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/testenv/chromiumenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// screenshotsVar, set to 1, makes TestReportPage write the README's
// screenshots (docs/report-overview.png, docs/report-storm.png).
const screenshotsVar = "STORMGUARD_SCREENSHOTS"

// TestReportPage is the report page's proof, through the real Postfix into
// a daemon with the memory store, in a real headless Chromium: a storm
// whose subject carries markup, script and a terminal escape, and a near
// miss; the page shows them with the counts `show --json` gives, the chart
// has their points, nothing on the page complains or runs the subject's
// script; allow from the page (after logging in with the admin token) lets
// the next reply through, and a forged POST without the CSRF token is
// refused and changes nothing.
func TestReportPage(t *testing.T) {
	sink := smtpenv.StartSink(t)
	n := startNode(t, "lists:\n  "+staffList+": 3000\n", sink)
	n.log.wait(t, 0, "stormguard started", "admin_api=true")
	cfg := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+n.http+"\n")
	base := "http://" + n.http

	const subject = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> Q4 \x1b[31mRED"
	root := "web-storm@example.org"
	thread := string(threadOf(root))
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	for i := 1; i <= 12; i++ {
		if r := replyAll(t, n, i, root, staffList, subject); (i <= 10) != r.OK() {
			t.Fatalf("reply-all %d: %v", i, r)
		}
	}
	// The near miss: half of max_replies (report.near_miss 0.5), no block.
	nearRoot := "web-near@example.org"
	near := string(threadOf(nearRoot))
	if r := send(t, n, boss, []string{staffList}, originalMail(nearRoot, staffList, "Parking")); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	for i := 1; i <= 5; i++ {
		if r := replyAll(t, n, 100+i, nearRoot, staffList, "Parking"); !r.OK() {
			t.Fatalf("near-miss reply %d: %v", i, r)
		}
	}
	// The history is written off the mail path: wait for both entries.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := mustRun(t, "storms", "--since", "1d", "--near-misses", "--json", "--config", cfg)
		if strings.Contains(out, thread) && strings.Contains(out, near) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the history lacks the storm or the near miss after 15s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond) // polling the daemon's recorder, bounded above
	}
	var shown admin.ThreadView
	if err := json.Unmarshal([]byte(mustRun(t, "show", thread, "--json", "--config", cfg)), &shown); err != nil {
		t.Fatal(err)
	}

	b := chromiumenv.Start(t)
	b.Do(t, 30*time.Second, chromedp.Navigate(base+"/?range=3h"), chromedp.WaitVisible(chromedp.CSS("#chart-storms")))
	row := `tr[data-thread="` + thread + `"] `
	cells := chromiumenv.Eval(t, b, 10*time.Second, chromedp.Evaluate[map[string]string](`(() => {
		const r = document.querySelector('`+row+`'), m = document.querySelector('tr[data-thread="`+near+`"]');
		return {kind: r.dataset.kind, accepted: r.querySelector(".accepted").textContent, refused: r.querySelector(".refused").textContent,
			allowed: r.querySelector(".allowed").textContent, subject: r.querySelector(".subject").textContent, near: m ? m.dataset.kind : ""}; })()`))
	want := map[string]string{"kind": admin.KindStorm, "near": admin.KindNearMiss,
		"accepted": fmt.Sprint(shown.Accepted), "refused": fmt.Sprint(shown.Blocked), "allowed": fmt.Sprint(shown.Allowed)}
	for k, w := range want {
		if cells[k] != w {
			t.Errorf("storm row %s = %q, want %q (show --json: %+v)", k, cells[k], w, shown)
		}
	}
	if shown.Accepted != 10 || shown.Blocked != 2 {
		t.Errorf("show --json: accepted %d, blocked %d; want 10, 2", shown.Accepted, shown.Blocked)
	}
	// The escape character is shown escaped, or gone (the store may have
	// cleaned it away), never raw.
	if s := cells["subject"]; !strings.Contains(s, "<script>window.pwned=1</script><img") || !strings.Contains(s, "[31mRED") || strings.Contains(s, "\x1b[") {
		t.Errorf("subject shown as %q: want the markup as text, the escape escaped or removed", s)
	}
	if p := chromiumenv.Eval(t, b, 10*time.Second, chromedp.Evaluate[string](`typeof window.pwned`)); p != "undefined" {
		t.Errorf("the subject's script ran: window.pwned is %s", p)
	}
	series := chromiumenv.Eval(t, b, 10*time.Second, chromedp.Evaluate[map[string][]int](
		`(() => { const c = Chart.getChart("chart-storms").data.datasets; return {storms: c[0].data, near: c[1].data}; })()`))
	if sum(series["storms"]) != 1 || sum(series["near"]) != 1 {
		t.Errorf("chart points %v: want one storm and one near miss", series)
	}
	if os.Getenv(screenshotsVar) == "1" {
		shot(t, b, base+"/?range=24h", "report-overview.png")
		shot(t, b, base+"/thread/"+thread, "report-storm.png")
	}

	// Log in and press allow: the next reply goes through.
	b.Do(t, 30*time.Second,
		chromedp.Navigate(base+"/thread/"+thread),
		chromedp.Click(chromedp.CSS("#login-link")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#allow")),
		chromedp.Click(chromedp.CSS("#allow")),
		chromedp.WaitVisible(chromedp.CSS("#done")),
	)
	if r := replyAll(t, n, 13, root, staffList, subject); !r.OK() {
		t.Fatalf("reply after allow on the page: %v, want 250", r)
	}

	// A forged POST: no session, then a session without the CSRF token.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	action := base + "/thread/" + thread + "/action"
	if resp, err := c.PostForm(action, url.Values{"verb": {"block"}}); err != nil || resp.StatusCode != 403 {
		t.Errorf("POST block without a session: %v %v, want 403", resp.StatusCode, err)
	}
	if resp, err := c.PostForm(base+"/login", url.Values{"token": {testToken}}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	if resp, err := c.PostForm(action, url.Values{"verb": {"block"}}); err != nil || resp.StatusCode != 403 {
		t.Errorf("POST block without the CSRF token: %v %v, want 403", resp.StatusCode, err)
	}
	if err := json.Unmarshal([]byte(mustRun(t, "show", thread, "--json", "--config", cfg)), &shown); err != nil || shown.Override != "allow" {
		t.Errorf("after the forged POSTs: override %q (%v), want allow", shown.Override, err)
	}
	if r := replyAll(t, n, 14, root, staffList, subject); !r.OK() {
		t.Errorf("reply after the forged block: %v, want 250", r)
	}
	if p := b.Problems(); len(p) != 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(p, "\n"))
	}
}

func sum(v []int) (s int) {
	for _, x := range v {
		s += x
	}
	return s
}

// shot writes a full-page screenshot of u to docs/name (quality 100: PNG).
func shot(t *testing.T, b *chromiumenv.Browser, u, name string) {
	t.Helper()
	b.Do(t, 30*time.Second, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(u))
	png := chromiumenv.Eval(t, b, 30*time.Second, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join("..", "..", "..", "docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
