// Package chromiumenv starts a headless Chromium for tests (Start), with a
// fresh profile in a temporary directory, driven over the DevTools
// protocol by chromedp, and keeps what its pages report as going wrong.
// It needs Debian's chromium installed; without it the test is skipped or
// fails as testenv says. It must not reach the network: every flag that
// makes Chromium call home is set.
package chromiumenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stormguard/stormguard/internal/testenv"
)

const installHint = "install Debian's chromium (apt-get install chromium)"

// Browser is a headless Chromium of one test, with what its pages wrote
// to the console and the exceptions they threw.
type Browser struct {
	Ctx context.Context // chromedp's: pass it to chromedp.Run

	mu       sync.Mutex
	problems []string
}

// Problems are the console errors and warnings and the uncaught
// exceptions of every page loaded so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Start starts a headless Chromium with a fresh profile and stops
// it when the test ends. The machine may have no internet: every flag
// that makes Chromium call home is set, so it neither floods refused
// connections nor waits on them. Root needs --no-sandbox.
func Start(t testing.TB) *Browser {
	t.Helper()
	bin := testenv.LookPath(t, "chromium", installHint)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{Ctx: ctx}
	// Listen starts the browser (not under a deadline: the first call
	// ties the browser's life to its context), so that a missing library
	// fails here, with its message, and not in the middle of the test.
	if err := chromedp.Listen(ctx, b.note); err != nil {
		cancel()
		cancelAlloc()
		if testenv.ServersRequired() {
			t.Fatalf("chromiumenv: chromium %s did not start: %v", bin, err)
		}
		t.Skipf("chromiumenv: chromium %s did not start (%v); set %s=1 to fail instead", bin, err, testenv.RequireServersVar)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return b
}

// note keeps what a page reports as going wrong: console errors,
// warnings and failed assertions, uncaught exceptions, and the browser's
// own log errors and warnings (a resource that failed to load, a
// Content-Security-Policy violation).
func (b *Browser) note(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		switch ev.Type {
		case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeWarning, runtime.ConsoleAPICalledTypeAssert:
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.TrimSpace(string(a.Value)+" "+a.Description))
			}
			b.add(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *cdplog.EventEntryAdded:
		if e := ev.Entry; e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning {
			b.add(fmt.Sprintf("log %s %s: %s (%s)", e.Level, e.Source, e.Text, e.URL))
		}
	}
}

func (b *Browser) add(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// Do runs steps in the browser's tab with a deadline.
func (b *Browser) Do(t testing.TB, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("chromium: %v", err)
	}
}

// Eval runs a on the browser's tab with a deadline and returns its value.
func Eval[T any](t testing.TB, b *Browser, timeout time.Duration, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return v
}
