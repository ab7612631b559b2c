package testenv

import (
	"strings"
	"testing"
)

// TestRequire: a missing server fails the test under
// STORMGUARD_REQUIRE_SERVERS=1 and skips it otherwise, with the hint.
func TestRequire(t *testing.T) {
	for _, required := range []string{"1", "", "0"} {
		t.Setenv(RequireServersVar, required)
		ft := &StopTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Require(ft, "frobd", "install frobd")
		}()
		<-done
		if want := required == "1"; ft.DidFail != want || ft.DidSkip == want {
			t.Errorf("%s=%q: failed %v, skipped %v; want failed %v", RequireServersVar, required, ft.DidFail, ft.DidSkip, want)
		}
		if !strings.Contains(ft.Msg, "frobd") || !strings.Contains(ft.Msg, "install frobd") {
			t.Errorf("%s=%q: message %q names neither the server nor the hint", RequireServersVar, required, ft.Msg)
		}
	}
}
