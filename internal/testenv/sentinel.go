// Redis Sentinel for tests (a master, a replica and 1-3 sentinels), and
// RedisServer: a redis-server process a test can kill, freeze, thaw and
// start again on the same port, to take Redis away under load.

package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SentinelMaster is the master name StartSentinel monitors.
const SentinelMaster = "stormguard"

// RedisServer is one redis-server (or sentinel) process started by a test
// on a fixed loopback port. It is stopped when the test ends, whatever
// state it was left in.
type RedisServer struct {
	Addr string // 127.0.0.1:PORT, the same across Restart
	Dir  string // working directory: logs, nodes.conf, sentinel.conf

	bin   string
	args  []string
	ready func(addr string, pid int) error // nil: redisPID over plain TCP

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedisServer is StartRedis returning a handle that can kill, stop
// and restart the server.
func StartRedisServer(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin := LookPath(t, "redis-server", redisInstallHint)
	return startServer(t, bin, func(port int, dir string) []string {
		return append([]string{
			"--save", "", "--appendonly", "no",
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		}, args...)
	}, nil)
}

// startServer starts bin with the arguments args(port, dir) makes, on a
// free port (retrying a lost port race), and waits until ready.
func startServer(t testing.TB, bin string, args func(port int, dir string) []string,
	ready func(addr string, pid int) error) *RedisServer {
	t.Helper()
	var errs []error
	for range startAttempts {
		port := FreePort(t)
		if port == 6379 || port == 26379 { // never the default Redis or Sentinel port
			continue
		}
		dir := t.TempDir()
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir,
			bin: bin, args: args(port, dir), ready: ready}
		err := s.start()
		if err == nil {
			t.Cleanup(s.kill)
			return s
		}
		errs = append(errs, err)
		if !errors.Is(err, errRedisExited) {
			break
		}
	}
	t.Fatalf("testenv: %s did not start: %v", bin, errors.Join(errs...))
	return nil
}

func (s *RedisServer) logPath() string { return filepath.Join(s.Dir, "redis.log") }

func (s *RedisServer) start() error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	err = s.waitReady()
	if err != nil {
		s.kill()
		log, _ := os.ReadFile(s.logPath())
		if errors.Is(err, errRedisExited) && !strings.Contains(string(log), "in use") {
			err = errors.New("server exited") // not a lost port race: do not retry
		}
		return fmt.Errorf("%s on %s: %w\n%s", s.bin, s.Addr, err, redisLogTail(log, 2000))
	}
	return nil
}

func (s *RedisServer) waitReady() error {
	if s.ready == nil {
		return redisWaitReady(s.Addr, s.cmd.Process.Pid, s.exited)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-s.exited:
			return errRedisExited
		default:
		}
		err := s.ready(s.Addr, s.cmd.Process.Pid)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", readyTimeout, err)
		}
		select {
		case <-s.exited:
			return errRedisExited
		case <-time.After(20 * time.Millisecond): // polling readiness, bounded above
		}
	}
}

// Pid is the server's current process id.
func (s *RedisServer) Pid() int { return s.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone: Redis crashed.
func (s *RedisServer) Kill(t testing.TB) {
	t.Helper()
	s.kill()
}

func (s *RedisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Stop freezes the process (SIGSTOP): Redis hangs, its port still accepts
// connections (the kernel completes the handshake) but nothing answers.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("testenv: SIGSTOP %s: %v", s.Addr, err)
	}
}

// Cont thaws a stopped process (SIGCONT).
func (s *RedisServer) Cont(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("testenv: SIGCONT %s: %v", s.Addr, err)
	}
}

// Restart starts the server again, empty, on the same port and with the
// same arguments, after Kill. It fails the test if the port was taken in
// between.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	select {
	case <-s.exited:
	default:
		t.Fatalf("testenv: Restart %s: the server is still running", s.Addr)
	}
	if err := s.start(); err != nil {
		t.Fatalf("testenv: restart: %v", err)
	}
}

// Sentinel is a Sentinel group: a master, one replica and the sentinels
// watching them, with fast failover (down-after 1s).
type Sentinel struct {
	Master    *RedisServer
	Replica   *RedisServer
	Sentinels []*RedisServer
	Name      string // the master name: SentinelMaster
}

// SentinelAddrs are the sentinels' addresses (redis.addrs with master_name).
func (g *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		addrs[i] = s.Addr
	}
	return addrs
}

// StartSentinel starts a master, a replica of it and n (1 to 3) sentinels
// monitoring the master under SentinelMaster with a quorum of n/2+1. It
// returns when the replica is in sync and every sentinel sees the replica
// and the other sentinels, so a failover can start at once. args go to
// the master and the replica (e.g. an ACL user).
func StartSentinel(t testing.TB, n int, args ...string) *Sentinel {
	t.Helper()
	if n < 1 || n > 3 {
		t.Fatalf("testenv: StartSentinel: %d sentinels, want 1 to 3", n)
	}
	bin := LookPath(t, "redis-server", redisInstallHint)
	// No 5s wait before the replica's first (diskless) sync.
	g := &Sentinel{Name: SentinelMaster, Master: StartRedisServer(t, append([]string{"--repl-diskless-sync-delay", "0"}, args...)...)}
	_, mport, _ := net.SplitHostPort(g.Master.Addr)
	g.Replica = StartRedisServer(t, append([]string{"--replicaof", "127.0.0.1", mport}, args...)...)
	waitFor(t, 10*time.Second, "replica in sync", func() (bool, string) {
		info, err := RedisCLIErr(g.Replica.Addr, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	})
	quorum := n/2 + 1
	for range n {
		s := startServer(t, bin, func(port int, dir string) []string {
			conf := filepath.Join(dir, "sentinel.conf") // sentinel rewrites it: its own dir
			text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %s %d
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, SentinelMaster, mport, quorum, SentinelMaster, SentinelMaster, SentinelMaster)
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				t.Fatalf("testenv: %v", err)
			}
			return []string{conf, "--sentinel"}
		}, nil)
		g.Sentinels = append(g.Sentinels, s)
	}
	for _, s := range g.Sentinels {
		waitFor(t, 15*time.Second, "sentinel "+s.Addr+" sees the replica and its peers", func() (bool, string) {
			m, err := RedisCLIErr(s.Addr, "SENTINEL", "MASTER", SentinelMaster)
			if err != nil {
				return false, err.Error()
			}
			f := fieldsOf(m)
			return f["num-slaves"] == "1" && f["num-other-sentinels"] == strconv.Itoa(n-1), m
		})
	}
	return g
}

// KillMaster SIGKILLs the current master; the sentinels promote the
// replica after down-after-milliseconds (1s) and an election.
func (g *Sentinel) KillMaster(t testing.TB) {
	t.Helper()
	g.Master.Kill(t)
}

// WaitFailover waits until every sentinel names a master other than old
// and that master answers as a master; it returns the new master's
// address.
func (g *Sentinel) WaitFailover(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var addr string
	waitFor(t, timeout, "failover away from "+old, func() (bool, string) {
		addr = ""
		for _, s := range g.Sentinels {
			out, err := RedisCLIErr(s.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
			f := strings.Fields(out)
			if err != nil || len(f) != 2 {
				return false, out
			}
			a := net.JoinHostPort(f[0], f[1])
			if a == old || addr != "" && a != addr {
				return false, a
			}
			addr = a
		}
		role, err := RedisCLIErr(addr, "ROLE")
		return err == nil && strings.HasPrefix(role, "master"), role
	})
	return addr
}

// fieldsOf reads redis-cli's output of a flat name/value reply (one item
// a line) into a map.
func fieldsOf(out string) map[string]string {
	lines := strings.Split(out, "\n")
	m := make(map[string]string, len(lines)/2)
	for i := 0; i+1 < len(lines); i += 2 {
		m[strings.TrimSpace(lines[i])] = strings.TrimSpace(lines[i+1])
	}
	return m
}

// waitFor polls cond every 20ms until it holds or timeout passes, then
// fails the test with what cond last reported.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
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
