package testenv

import (
	"fmt"
	"runtime"
	"testing"
)

// stopTB records Fatalf and Skipf and ends the goroutine it runs in, not
// the real test: call the code under test with it in a goroutine of its
// own.
type stopTB struct {
	testing.TB
	msg             string
	failed, skipped bool
}

func (f *stopTB) Fatalf(format string, args ...any) {
	f.msg, f.failed = fmt.Sprintf(format, args...), true
	runtime.Goexit()
}

func (f *stopTB) Skipf(format string, args ...any) {
	f.msg, f.skipped = fmt.Sprintf(format, args...), true
	runtime.Goexit()
}
