package chromiumenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestChromiumRunsPageScriptAndReportsProblems: the browser loads a page
// from a local server, runs its script, and reports its console error and
// its uncaught exception.
func TestChromiumRunsPageScriptAndReportsProblems(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.getElementById("x").textContent = "ran"; console.error("boom"); setTimeout(function () { null.f(); }, 0);`)
			return
		}
		fmt.Fprint(w, `<!doctype html><link rel="icon" href="data:,"><p id="x">not yet</p><script src="/s.js"></script>`)
	}))
	defer srv.Close()
	b := Start(t)
	b.Do(t, 20*time.Second, chromedp.Navigate(srv.URL))
	text := Eval(t, b, 10*time.Second, chromedp.Text(chromedp.CSS("#x")))
	if text != "ran" {
		t.Errorf("page text %q: the script did not run", text)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := strings.Join(b.Problems(), "\n")
		if strings.Contains(p, "console.error: \"boom\"") && strings.Contains(p, "exception") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("problems reported: %q", b.Problems())
		}
		time.Sleep(20 * time.Millisecond) // polling the browser's events, bounded above
	}
}
