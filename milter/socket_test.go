package milter

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shortDir is a temporary directory with a short path: unix socket paths
// are limited to 108 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestListenRefusesALiveSocket: a second daemon on the same unix socket
// must fail with an error naming the path, and leave the first one's
// socket answering.
func TestListenRefusesALiveSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "milter.sock")
	first, err := Listen("unix:"+path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := first.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()

	second, err := Listen("unix:"+path, 0o660)
	if err == nil {
		second.Close()
		t.Fatal("a second Listen on a socket another process answers on succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another process") {
		t.Errorf("error %q: want the path and that another process answers on it", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the first daemon's socket no longer answers: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("the first daemon did not get the connection: %v", err)
	}
}

// TestListenRefusesANonSocket: a file that is not a socket is not ours to
// remove, and the error says so.
func TestListenRefusesANonSocket(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "milter.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen("unix:"+path, 0o600); err == nil {
		ln.Close()
		t.Fatal("listening over a regular file succeeded")
	} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %q: want the path and that it is not a socket", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was changed: %q, %v", b, err)
	}
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen("unix:"+sub, 0o600); err == nil {
		ln.Close()
		t.Fatal("listening over a directory succeeded")
	}
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		t.Errorf("the directory was removed: %v", err)
	}
}
