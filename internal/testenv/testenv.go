// Package testenv starts the real servers stormguard's tests run against:
// a private Postfix, a private Sendmail (Debian's packages, which
// ./scripts/test.sh downloads and unpacks, never installed), a private Redis (and Redis Cluster, Sentinel,
// TLS and ACL setups), a private OpenLDAP (slapd.go), and an SMTP sink, each in its own temporary
// directory on a free loopback port, and stops them when the test ends;
// Send talks SMTP to any of them. The sink and Send are go-smtp's server
// and client; the MTAs share one harness (MTA). StartChromium starts a
// headless Chromium (Debian's chromium) that tests drive with chromedp.
// Nothing system-wide is configured, started or stopped.
//
// A test that needs a server which is missing here (binary not installed,
// Sendmail not unpacked, not running as root for Postfix or Sendmail) is
// skipped, unless the environment sets
// STORMGUARD_REQUIRE_SERVERS=1 (./scripts/test.sh does), in which case it
// fails: the project's test command must never pass by skipping.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// requireServersVar names the environment variable that turns a missing
// server into a test failure instead of a skip.
const requireServersVar = "STORMGUARD_REQUIRE_SERVERS"

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
	return os.Getenv(requireServersVar) == "1"
}

// Require stops the test because what is unavailable: it fails the test when
// STORMGUARD_REQUIRE_SERVERS=1, and skips it otherwise. hint says how to get
// what is missing (a package to install, run as root, ...).
func Require(t testing.TB, what, hint string) {
	t.Helper()
	if ServersRequired() {
		t.Fatalf("testenv: %s is required (%s=1): %s", what, requireServersVar, hint)
	}
	t.Skipf("testenv: %s unavailable, skipping (%s); set %s=1 to fail instead", what, hint, requireServersVar)
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
