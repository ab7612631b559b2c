package testenv

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartRedis(t *testing.T) {
	addr := StartRedis(t, "--maxmemory", "10mb")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "6379" {
		t.Fatalf("StartRedis = %q: want 127.0.0.1 and a port other than 6379", addr)
	}
	if got := RedisCLI(t, addr, "PING"); got != "PONG" {
		t.Errorf("PING = %q", got)
	}
	for _, c := range []struct{ key, want string }{
		{"port", "port\n" + port},
		{"save", "save"}, // no snapshots
		{"appendonly", "appendonly\nno"},
		{"bind", "bind\n127.0.0.1"},
		{"maxmemory", "maxmemory\n10485760"}, // extra args are passed on
	} {
		if got := RedisCLI(t, addr, "CONFIG", "GET", c.key); got != c.want {
			t.Errorf("CONFIG GET %s = %q, want %q", c.key, got, c.want)
		}
	}
	if got := RedisCLI(t, addr, "SET", "k", "v"); got != "OK" {
		t.Errorf("SET = %q", got)
	}
	if got := RedisCLI(t, addr, "GET", "k"); got != "v" {
		t.Errorf("GET = %q", got)
	}
}

func TestStartRedisIsolated(t *testing.T) {
	a, b := StartRedis(t), StartRedis(t)
	if a == b {
		t.Fatalf("two servers share %s", a)
	}
	RedisCLI(t, a, "SET", "only-in-a", "1")
	if got := RedisCLI(t, b, "EXISTS", "only-in-a"); got != "0" {
		t.Errorf("EXISTS in the other server = %q, want 0", got)
	}
}

func TestStartRedisStopsAtCleanup(t *testing.T) {
	var addr string
	t.Run("server", func(t *testing.T) {
		addr = StartRedis(t)
		RedisCLI(t, addr, "PING")
	})
	if addr == "" {
		t.Skip("no server started")
	}
	// The cleanup waits for the process to exit, so the port is closed now.
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the test that started it ended", addr)
	}
}

// TestCheckPID: a server is taken for ours only if it reports our process
// id; a closed port is an error, not a server.
func TestCheckPID(t *testing.T) {
	s := StartRedisServer(t)
	if err := checkPID(s.Addr, s.Pid(), nil); err != nil {
		t.Errorf("our own server: %v", err)
	}
	if err := checkPID(s.Addr, s.Pid()+1, nil); err == nil || !strings.Contains(err.Error(), "not ours") {
		t.Errorf("a server of another process: %v, want \"not ours\"", err)
	}
	s.Kill(t)
	if _, err := redisPID(s.Addr, nil); err == nil {
		t.Error("redisPID on a closed port succeeded")
	}
}

func TestRedisCLIErrorReply(t *testing.T) {
	addr := StartRedis(t)
	if _, err := RedisCLIErr(addr, "NOSUCHCOMMAND"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("RedisCLIErr(NOSUCHCOMMAND) error = %v, want the server's error", err)
	}
	RedisCLI(t, addr, "SET", "s", "text")
	if _, err := RedisCLIErr(addr, "INCR", "s"); err == nil {
		t.Error("RedisCLIErr(INCR on a string) succeeded, want an error")
	}
}

func TestStartRedisBadArgsFails(t *testing.T) {
	// A server that cannot start is reported with its log, at once: run
	// it with a fake TB to catch the Fatalf.
	LookPath(t, "redis-server", redisInstallHint)
	ft := &stopTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartRedis(ft, "--no-such-option", "x")
	}()
	select {
	case <-done:
	case <-time.After(readyTimeout):
		t.Fatal("StartRedis with a bad option did not give up")
	}
	if !strings.Contains(ft.msg, "no-such-option") {
		t.Errorf("failure message %q does not show the server's complaint", ft.msg)
	}
}
