package testenv

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func rusageSelf(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcCPU of this process grows as getrusage says it does.
func TestProcCPU(t *testing.T) {
	before, _, ok := ProcCPU(os.Getpid())
	if !ok {
		t.Fatal("ProcCPU of this process: not ok")
	}
	ruBefore := rusageSelf(t)
	var x uint64
	for deadline := time.Now().Add(20 * time.Second); rusageSelf(t)-ruBefore < 300*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatal("300 ms of CPU not used in 20 s")
		}
		for i := range 10000 {
			x += uint64(i) * x
		}
	}
	after, _, _ := ProcCPU(os.Getpid())
	ru := rusageSelf(t) - ruBefore
	// Ticks of 10 ms, rounded on both sides, user and sys apart.
	if d := after - before; d < ru-50*time.Millisecond || d > ru+50*time.Millisecond {
		t.Errorf("getrusage says %v used, ProcCPU grew by %v (x=%d)", ru, d, x)
	}
	if _, _, ok := ProcCPU(-1); ok {
		t.Error("ProcCPU(-1) is ok")
	}
}
