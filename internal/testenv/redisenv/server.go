// Server: a redis-server process a test can kill, freeze, thaw and start
// again on the same port, to take Redis away under load.

package redisenv

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

	"github.com/stormguard/stormguard/internal/testenv"
)

// Server is one redis-server (or sentinel) process started by a test
// on a fixed loopback port. It is stopped when the test ends, whatever
// state it was left in.
type Server struct {
	Addr string // 127.0.0.1:PORT, the same across Restart
	Dir  string // working directory: logs, nodes.conf, sentinel.conf

	bin   string
	args  []string
	ready func(addr string, pid int) error // nil: redisPID over plain TCP

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartServer is Start returning a handle that can kill, stop
// and restart the server.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := testenv.LookPath(t, "redis-server", installHint)
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
	ready func(addr string, pid int) error) *Server {
	t.Helper()
	var errs []error
	for range testenv.StartAttempts {
		port := testenv.FreePort(t)
		if port == 6379 || port == 26379 { // never the default Redis or Sentinel port
			continue
		}
		dir := t.TempDir()
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir,
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
	t.Fatalf("redisenv: %s did not start: %v", bin, errors.Join(errs...))
	return nil
}

func (s *Server) logPath() string { return filepath.Join(s.Dir, "redis.log") }

func (s *Server) start() error {
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

func (s *Server) waitReady() error {
	if s.ready == nil {
		return redisWaitReady(s.Addr, s.cmd.Process.Pid, s.exited)
	}
	deadline := time.Now().Add(testenv.ReadyTimeout)
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
			return fmt.Errorf("not ready after %v: %w", testenv.ReadyTimeout, err)
		}
		select {
		case <-s.exited:
			return errRedisExited
		case <-time.After(20 * time.Millisecond): // polling readiness, bounded above
		}
	}
}

// Pid is the server's current process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone: Redis crashed.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.kill()
}

func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Stop freezes the process (SIGSTOP): Redis hangs, its port still accepts
// connections (the kernel completes the handshake) but nothing answers.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("redisenv: SIGSTOP %s: %v", s.Addr, err)
	}
}

// Cont thaws a stopped process (SIGCONT).
func (s *Server) Cont(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("redisenv: SIGCONT %s: %v", s.Addr, err)
	}
}

// Restart starts the server again, empty, on the same port and with the
// same arguments, after Kill. It fails the test if the port was taken in
// between.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	select {
	case <-s.exited:
	default:
		t.Fatalf("redisenv: Restart %s: the server is still running", s.Addr)
	}
	if err := s.start(); err != nil {
		t.Fatalf("redisenv: restart: %v", err)
	}
}

// gone reports whether the process has exited (killed and not restarted).
func (s *Server) gone() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}
