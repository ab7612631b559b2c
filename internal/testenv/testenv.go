// Package testenv is what every server harness of stormguard's tests
// shares: free loopback ports, temporary files, the rule that a missing
// server skips a test or fails it, polling with a deadline, test
// certificates made with openssl (tls.go), and the process table under
// /proc (proc.go). It starts no server itself; each server has a package
// of its own below it:
//
//   - redisenv: redis-server (standalone, Cluster, Sentinel, TLS, ACL) and redis-cli
//   - smtpenv: an SMTP sink (go-smtp's server) and Send, the client every test speaks SMTP with
//   - mtaenv: the harness the private Postfix and Sendmail share
//   - postfixenv: a private Postfix, its queue and SMTP AUTH through Cyrus SASL
//   - sendmailenv: a private Sendmail, its queue and quarantine
//   - slapdenv: a private OpenLDAP slapd
//   - chromiumenv: a headless Chromium driven with chromedp
//
// Each server runs in its own temporary directory on a free loopback port
// and is stopped when the test ends. Nothing system-wide is configured,
// started or stopped, and nothing here may do so.
//
// A test that needs a server which is missing (binary not installed,
// Sendmail not unpacked, not running as root for Postfix or Sendmail) is
// skipped, unless the environment sets STORMGUARD_REQUIRE_SERVERS=1
// (./scripts/test.sh does), in which case it fails: the project's test
// command must never pass by skipping.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RequireServersVar names the environment variable that turns a missing
// server into a test failure instead of a skip.
const RequireServersVar = "STORMGUARD_REQUIRE_SERVERS"

const (
	// StartAttempts is how many free ports a server is tried on before
	// the test gives up: another process may take a port between FreePort
	// and the server's bind.
	StartAttempts = 5
	// ReadyTimeout is how long a started server may take to answer.
	ReadyTimeout = 10 * time.Second
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// listens on port 0, reads the port the kernel chose and closes the listener.
// Another process may take it in between; the servers started here fail
// loudly when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("testenv: free port: close: %v", err)
	}
	return port
}

// ServersRequired reports whether STORMGUARD_REQUIRE_SERVERS=1 is set.
func ServersRequired() bool {
	return os.Getenv(RequireServersVar) == "1"
}

// Require stops the test because what is unavailable: it fails the test when
// STORMGUARD_REQUIRE_SERVERS=1, and skips it otherwise. hint says how to get
// what is missing (a package to install, run as root, ...).
func Require(t testing.TB, what, hint string) {
	t.Helper()
	if ServersRequired() {
		t.Fatalf("testenv: %s is required (%s=1): %s", what, RequireServersVar, hint)
	}
	t.Skipf("testenv: %s unavailable, skipping (%s); set %s=1 to fail instead", what, hint, RequireServersVar)
}

// LookPath finds a program in PATH and in the sbin directories (which a
// non-login root shell may lack), and calls Require when it is missing.
func LookPath(t testing.TB, name, hint string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Require(t, name, hint)
	return ""
}

// ConfigFile writes body to a stormguard.yaml in a temporary directory
// removed when the test ends, and returns its path.
func ConfigFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stormguard.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitFor polls cond every 20ms until it holds or timeout passes, then
// fails the test with what cond last reported.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s: not after %v; last: %s", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}
