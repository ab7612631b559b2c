package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/testenv"
)

// TestBinaryRunsWithoutConfigAndStopsOnSIGTERM runs the plain binary:
// `stormguard serve` with no config file (memory store), drives one message
// through it with go-milter's client, and stops it with SIGTERM.
func TestBinaryRunsWithoutConfigAndStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the plain binary, not the race detector's")
	}
	bin := plainBinary
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"STORMGUARD_LISTEN=inet:"+addr,
		fmt.Sprintf("STORMGUARD_HTTP_LISTEN=127.0.0.1:%d", testenv.FreePort(t)))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log []string
	waitFor := func(part string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stormguard exited before logging %q:\n%s", part, strings.Join(log, "\n"))
				}
				log = append(log, l)
				if strings.Contains(l, part) {
					return
				}
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("no %q in the log:\n%s", part, strings.Join(log, "\n"))
			}
		}
	}
	waitFor("stormguard started")
	if !strings.Contains(log[len(log)-1], "store=memory") {
		t.Errorf("default store is not memory: %s", log[len(log)-1])
	}
	// One message through the real binary, as an MTA would send it.
	act, err := decide(addr)
	if err != nil {
		t.Fatal(err)
	}
	if act.Type != gomilter.ActionAccept {
		t.Errorf("small message: got %v, want accept at end of headers", act)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("stopped")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
