package testenv

import (
	"fmt"
	"runtime"
	"testing"
)

// StopTB records Fatalf and Skipf and ends the goroutine it runs in, not
// the real test: the harnesses' own tests call a Start function with it,
// in a goroutine of its own, to see how it gives up.
type StopTB struct {
	testing.TB
	Msg              string // the last Fatalf or Skipf message
	DidFail, DidSkip bool
}

// Fatalf records the failure and ends the calling goroutine.
func (f *StopTB) Fatalf(format string, args ...any) {
	f.Msg, f.DidFail = fmt.Sprintf(format, args...), true
	runtime.Goexit()
}

// Skipf records the skip and ends the calling goroutine.
func (f *StopTB) Skipf(format string, args ...any) {
	f.Msg, f.DidSkip = fmt.Sprintf(format, args...), true
	runtime.Goexit()
}
