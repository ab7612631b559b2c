// Package redisenv starts private redis-server processes for tests: a
// standalone server (Start), one a test can kill, freeze and restart
// (StartServer), a Redis Cluster (StartCluster; with a replica per
// master, StartClusterReplicas), a Sentinel group (StartSentinel) and a
// TLS-only server (StartTLS), and runs the real redis-cli against them
// (CLI), as a user limited by an ACL (AddACLUser, CLIAs) if need be. It needs redis-server and redis-tools installed, and
// openssl for TLS; without them the test is skipped or fails as testenv
// says.
//
// It never touches the Redis on 127.0.0.1:6379 or a Sentinel on 26379:
// every server here is started by the test on a free loopback port, in a
// temporary directory, without persistence, checked by process id before
// use, and killed when the test ends.
package redisenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/stormguard/stormguard/internal/testenv"
)

const installHint = "install redis-server and redis-tools (apt-get install redis-server redis-tools, or brew install redis)"

// Start starts a fresh redis-server on a free loopback port with no
// persistence, waits until it answers PING, and stops it when the test
// ends. args are appended to the server's command line (e.g.
// "--cluster-enabled", "yes"). It returns "127.0.0.1:PORT".
func Start(t testing.TB, args ...string) string {
	t.Helper()
	bin := testenv.LookPath(t, "redis-server", installHint)
	var errs []error
	for range testenv.StartAttempts {
		addr, err := redisStart(t, bin, args)
		if err == nil {
			return addr
		}
		errs = append(errs, err)
		if !errors.Is(err, errRedisExited) {
			break // not a lost port race: another port will not help
		}
	}
	t.Fatalf("redisenv: redis-server did not start: %v", errors.Join(errs...))
	return ""
}

// errRedisExited: the server exited because its port was taken; another
// port may do.
var errRedisExited = errors.New("server exited: port in use")

func redisStart(t testing.TB, bin string, args []string) (string, error) {
	port := testenv.FreePort(t)
	if port == 6379 { // never the default Redis port, even if it happens to be free
		return "", fmt.Errorf("got port 6379, skipped: %w", errRedisExited)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()

	cmdArgs := append([]string{
		"--save", "", "--appendonly", "no",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
	}, args...)
	cmd := exec.Command(bin, cmdArgs...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := redisWaitReady(addr, cmd.Process.Pid, exited); err != nil {
		stop()
		log, _ := os.ReadFile(logPath)
		if errors.Is(err, errRedisExited) && !bytes.Contains(log, []byte("in use")) {
			err = errors.New("server exited") // not a lost port race: do not retry
		}
		return "", fmt.Errorf("%s on port %d: %w\n%s", bin, port, err, redisLogTail(log, 2000))
	}
	t.Cleanup(stop)
	return addr, nil
}

// redisWaitReady polls addr until the server answers PING and reports our
// process id (so a server someone else started on the same port is never
// mistaken for ours), the process exits, or testenv.ReadyTimeout passes.
func redisWaitReady(addr string, pid int, exited <-chan struct{}) error {
	deadline := time.Now().Add(testenv.ReadyTimeout)
	backoff := 5 * time.Millisecond
	var last error
	for {
		select {
		case <-exited:
			return errRedisExited
		default:
		}
		last = checkPID(addr, pid, nil)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", testenv.ReadyTimeout, last)
		}
		select {
		case <-exited:
			return errRedisExited
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// checkPID reports an error unless the server on addr (over TLS when
// tlsConfig is set) answers PING and is process pid.
func checkPID(addr string, pid int, tlsConfig *tls.Config) error {
	got, err := redisPID(addr, tlsConfig)
	if err != nil {
		return err
	}
	if got != pid {
		return fmt.Errorf("%s is served by process %d, not ours (%d)", addr, got, pid)
	}
	return nil
}

// redisPID sends PING and INFO server through go-redis, over one
// connection it dials itself (TLS when tlsConfig is set: go-redis would
// log each refused dial while a server starts), and returns the server's
// process_id.
func redisPID(addr string, tlsConfig *tls.Config) (int, error) {
	d := &net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if tlsConfig != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).Dial("tcp", addr)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conns := make(chan net.Conn, 1)
	conns <- conn
	c := redis.NewClient(&redis.Options{
		Addr: addr,
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			select {
			case c := <-conns:
				return c, nil
			default:
				return nil, errors.New("redisenv: the one connection is used")
			}
		},
		Protocol:                 2, // RESP2: no HELLO, no push messages to drain (go-redis logs a failed drain)
		ReadTimeout:              time.Second,
		WriteTimeout:             time.Second,
		MaxRetries:               -1,
		PoolSize:                 1,
		DisableIdentity:          true, // no CLIENT SETINFO
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return 0, fmt.Errorf("PING: %w", err)
	}
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO server: %w", err)
	}
	v, ok := info["Server"]["process_id"]
	if !ok {
		return 0, errors.New("INFO server has no process_id")
	}
	return strconv.Atoi(v)
}

// CLI runs the real redis-cli against addr with args (one command) and
// returns its trimmed output. An error reply or a failure to run fails the
// test. End-to-end tests use it for what operators do by hand: overrides,
// list sizes, the mode switch.
func CLI(t testing.TB, addr string, args ...string) string {
	t.Helper()
	testenv.LookPath(t, "redis-cli", installHint)
	out, err := CLIErr(addr, args...)
	if err != nil {
		t.Fatalf("redisenv: %v", err)
	}
	return out
}

// CLIErr is CLI for callers that expect the command to fail, or
// that run outside the test goroutine.
func CLIErr(addr string, args ...string) (string, error) {
	return cliWithin(0, addr, args...)
}

// cliWithin is CLIErr killing redis-cli after timeout (0: none), for a
// server that may be frozen (redis-cli itself would wait for ever).
func cliWithin(timeout time.Duration, addr string, args ...string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("redis-cli: address %q: %w", addr, err)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// -e: exit non-zero on an error reply (redis-cli exits 0 otherwise).
	cmd := exec.CommandContext(ctx, "redis-cli", append([]string{"-e", "-h", host, "-p", port}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("redis-cli %s: %w: %s%s", strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func redisLogTail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
