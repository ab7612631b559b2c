// Package e2e runs the stormguard binary as an operator and an MTA would:
// `stormguard serve` with a config file, driven through real Postfix,
// Sendmail, miltertest and its HTTP server, and the operator's commands
// against it and its store.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/admin"
)

// testToken is the admin token every daemon and command of these tests
// shares: TestMain points http.admin_token_file at it through the
// environment.
var testToken string

// raceBinary is stormguard built with the race detector when these tests
// run with it (a race in the daemon exits 66 and fails the test), which
// execute runs; plainBinary is built without it, for the tests that
// measure the process (memory, descriptors) or stand in for the shipped
// binary.
var raceBinary, plainBinary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stormguard-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "admin.token")
	if testToken, err = admin.EnsureToken(path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("STORMGUARD_HTTP_ADMIN_TOKEN_FILE", path)
	plainBinary = filepath.Join(dir, "stormguard")
	raceBinary = plainBinary
	if raceEnabled {
		raceBinary = filepath.Join(dir, "stormguard-race")
	}
	for bin, flags := range map[string][]string{plainBinary: nil, raceBinary: raceFlags()} {
		args := append(append([]string{"build"}, flags...), "-o", bin, "github.com/stormguard/stormguard/cmd/stormguard")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", args, err, out)
			return 1
		}
	}
	return m.Run()
}

func raceFlags() []string {
	if raceEnabled {
		return []string{"-race"}
	}
	return nil
}

// execute runs one stormguard command line and returns its exit code.
// When ctx ends the command gets SIGTERM, as from a service manager.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, raceBinary, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	if ps := cmd.ProcessState; ps != nil && ps.Exited() {
		return ps.ExitCode()
	}
	fmt.Fprintf(stderr, "e2e: stormguard %v: %v\n", args, err)
	return -1
}
