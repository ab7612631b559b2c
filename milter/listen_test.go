package milter

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseListen(t *testing.T) {
	for _, tc := range []struct{ spec, network, addr string }{
		{"inet:127.0.0.1:7357", "tcp", "127.0.0.1:7357"},
		{"inet:7357@127.0.0.1", "tcp", "127.0.0.1:7357"},
		{"inet6:[::1]:7357", "tcp6", "[::1]:7357"},
		{"inet4:0.0.0.0:7357", "tcp4", "0.0.0.0:7357"},
		{"unix:/run/stormguard/milter.sock", "unix", "/run/stormguard/milter.sock"},
		{"local:/run/stormguard/milter.sock", "unix", "/run/stormguard/milter.sock"},
	} {
		n, a, err := ParseListen(tc.spec)
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("ParseListen(%q) = %q, %q, %v; want %q, %q", tc.spec, n, a, err, tc.network, tc.addr)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:7357", "tcp://127.0.0.1:7357", "unix:relative.sock", "inet:7357", "inet:", "pipe:/x"} {
		if _, _, err := ParseListen(bad); err == nil {
			t.Errorf("ParseListen(%q): want an error", bad)
		}
	}
}

// TestUnixSocketModeAndStaleFile: the socket gets listen_mode, and a stale
// socket left by a crash does not stop the next start.
func TestUnixSocketModeAndStaleFile(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "milter.sock")
	ln, err := Listen("unix:"+path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	// Leave the socket file behind, as a killed daemon would.
	if ul, ok := ln.(interface{ SetUnlinkOnClose(bool) }); ok {
		ul.SetUnlinkOnClose(false)
	}
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err = Listen("unix:"+path, 0o600)
	if err != nil {
		t.Fatalf("second start over a stale socket: %v", err)
	}
	ln.Close()
	// A regular file at the path is not ours to delete.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix:"+path, 0o600); err == nil {
		t.Error("listening over a regular file should fail")
	}
}
