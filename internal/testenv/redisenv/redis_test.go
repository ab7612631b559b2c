package redisenv

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

func TestStartRedis(t *testing.T) {
	addr := Start(t, "--maxmemory", "10mb")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "6379" {
		t.Fatalf("Start = %q: want 127.0.0.1 and a port other than 6379", addr)
	}
	if got := CLI(t, addr, "PING"); got != "PONG" {
		t.Errorf("PING = %q", got)
	}
	for _, c := range []struct{ key, want string }{
		{"port", "port\n" + port},
		{"save", "save"}, // no snapshots
		{"appendonly", "appendonly\nno"},
		{"bind", "bind\n127.0.0.1"},
		{"maxmemory", "maxmemory\n10485760"}, // extra args are passed on
	} {
		if got := CLI(t, addr, "CONFIG", "GET", c.key); got != c.want {
			t.Errorf("CONFIG GET %s = %q, want %q", c.key, got, c.want)
		}
	}
	if got := CLI(t, addr, "SET", "k", "v"); got != "OK" {
		t.Errorf("SET = %q", got)
	}
	if got := CLI(t, addr, "GET", "k"); got != "v" {
		t.Errorf("GET = %q", got)
	}
}

func TestStartRedisIsolated(t *testing.T) {
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two servers share %s", a)
	}
	CLI(t, a, "SET", "only-in-a", "1")
	if got := CLI(t, b, "EXISTS", "only-in-a"); got != "0" {
		t.Errorf("EXISTS in the other server = %q, want 0", got)
	}
}

func TestStartRedisStopsAtCleanup(t *testing.T) {
	var addr string
	t.Run("server", func(t *testing.T) {
		addr = Start(t)
		CLI(t, addr, "PING")
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
	s := StartServer(t)
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
	addr := Start(t)
	if _, err := CLIErr(addr, "NOSUCHCOMMAND"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("CLIErr(NOSUCHCOMMAND) error = %v, want the server's error", err)
	}
	CLI(t, addr, "SET", "s", "text")
	if _, err := CLIErr(addr, "INCR", "s"); err == nil {
		t.Error("CLIErr(INCR on a string) succeeded, want an error")
	}
}

func TestStartRedisBadArgsFails(t *testing.T) {
	// A server that cannot start is reported with its log, at once: run
	// it with a fake TB to catch the Fatalf.
	testenv.LookPath(t, "redis-server", installHint)
	ft := &testenv.StopTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, "--no-such-option", "x")
	}()
	select {
	case <-done:
	case <-time.After(testenv.ReadyTimeout):
		t.Fatal("Start with a bad option did not give up")
	}
	if !strings.Contains(ft.Msg, "no-such-option") {
		t.Errorf("failure message %q does not show the server's complaint", ft.Msg)
	}
}
