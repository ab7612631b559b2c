// Package mtaenv is the harness the private Postfix (postfixenv) and
// Sendmail (sendmailenv) share: the instance's temporary directory, its
// SMTP port on 127.0.0.1, its log, the wait for its 220 banner, and the
// session of processes that is ended, down to the last one, when the test
// ends. It starts no MTA itself and needs nothing installed; it reads
// /proc, so it works on Linux only.
package mtaenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

// Instance is one private MTA: one temporary directory, removed when the
// test ends (after the instance's log is shown if the test failed), an
// SMTP port on 127.0.0.1, and the session of processes that is ended, down
// to the last one, when the test ends.
type Instance struct {
	Addr    string // SMTP host:port (127.0.0.1)
	Port    int
	Dir     string // the instance's base directory
	LogFile string // the instance's log
	// Tag goes in the instance's 220 banner, to tell it from others:
	// WaitBanner waits for a banner holding it.
	Tag string

	t      testing.TB
	name   string // "postfix", "sendmail": in messages
	leader int    // the session leader (Postfix's master, the Sendmail daemon); 0 when none runs
}

// mtaPort chooses an MTA's SMTP port; a variable so a test can hand out a
// taken port.
var mtaPort = testenv.FreePort

// New makes an instance's directory, /tmp/PREFIX*, with its log file
// logName in it, and registers with t the stop of the instance's
// processes and the directory's removal. name ("postfix", "sendmail")
// names the instance in messages.
func New(t testing.TB, name, prefix, logName string) *Instance {
	t.Helper()
	// Not t.TempDir: its parents are 0700 and long, where Postfix's
	// unprivileged processes must traverse the path, unix socket paths
	// must stay below 108 bytes and Sendmail refuses group- or
	// world-writable directories above its files; /tmp (sticky) passes.
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("mtaenv: %s: %v", name, err)
	}
	m := &Instance{Dir: dir, LogFile: filepath.Join(dir, logName), t: t, name: name, Tag: filepath.Base(dir)}
	// Registered first, so it runs last: after the stop below.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mtaenv: %s log (%s):\n%s", name, m.LogFile, m.Log())
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("mtaenv: %s: remove %s: %v", name, dir, err)
		}
	})
	t.Cleanup(func() { m.stop(10 * time.Second) })
	return m
}

// addrInUse is what a daemon logs when it cannot bind its port: Postfix's
// start then fails, Sendmail keeps retrying.
const addrInUse = "Address already in use"

// Start gives the instance a free port (Port, Addr), calls launch to
// write its configuration and start it there, and waits for its banner.
// launch returns the process id of the session leader it started (the
// leader called setsid: every process of the instance is in its session),
// or 0 and an error. When the log says the port was taken, Start stops
// what launch started and tries another; any other failure fails the
// test.
func (m *Instance) Start(launch func() (leader int, err error)) {
	m.t.Helper()
	for attempt := 1; ; attempt++ {
		m.Port = mtaPort(m.t)
		m.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port))
		_ = os.Remove(m.LogFile)
		leader, err := launch()
		if leader != 0 {
			m.leader = leader
		}
		if err == nil {
			err = m.WaitBanner(30 * time.Second)
		}
		if err == nil {
			return
		}
		if attempt < 5 && strings.Contains(m.Log(), addrInUse) {
			m.t.Logf("mtaenv: %s: port %d taken, trying another", m.name, m.Port)
			m.stop(0)
			continue
		}
		m.t.Fatalf("mtaenv: %s: %v\nlog:\n%s", m.name, err, m.Log())
	}
}

// WaitBanner polls the SMTP port until this instance greets with 220 and
// its Tag, for up to limit.
func (m *Instance) WaitBanner(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if m.leader != 0 && !testenv.ProcessAlive(m.leader) {
			return fmt.Errorf("%s (pid %d) exited", m.name, m.leader)
		}
		if strings.Contains(m.Log(), addrInUse) {
			return fmt.Errorf("%s cannot listen on %s: %s", m.name, m.Addr, addrInUse)
		}
		line, err := banner(m.Addr)
		if err == nil && strings.HasPrefix(line, "220 ") && strings.Contains(line, m.Tag) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("banner %q is not this instance's", line)
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s on %s did not answer 220 within %v: %v", m.name, m.Addr, limit, last)
}

// banner reads the first line a server sends, then says QUIT.
func banner(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return strings.TrimRight(line, "\r\n"), nil
}

// OutputFile is where a daemon started by the test writes its stdout and
// stderr; Log shows it.
func (m *Instance) OutputFile() string { return filepath.Join(m.Dir, "output") }

// Leader is the process id of the session leader (Postfix's master, the
// Sendmail daemon); 0 when none runs.
func (m *Instance) Leader() int { return m.leader }

// Log returns the instance's log so far followed by anything the daemon
// wrote to stdout or stderr; "" when there is nothing yet.
func (m *Instance) Log() string {
	b, _ := os.ReadFile(m.LogFile)
	if out, _ := os.ReadFile(m.OutputFile()); len(out) > 0 {
		b = append(append(b, "--- stdout/stderr:\n"...), out...)
	}
	return string(b)
}

// stop SIGTERMs the session leader (Postfix's master and Sendmail pass it
// on to their children), waits up to grace for every process of its
// session to exit, and SIGKILLs what is left. The leader called setsid, so
// whatever it started shares its session id.
func (m *Instance) stop(grace time.Duration) {
	leader := m.leader
	if leader == 0 {
		return
	}
	m.leader = 0
	gone := func(limit time.Duration) bool {
		for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
			if !testenv.ProcessAlive(leader) && len(testenv.SessionPIDs(leader)) == 0 {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	if grace > 0 {
		_ = syscall.Kill(leader, syscall.SIGTERM)
		if gone(grace) {
			return
		}
		m.t.Logf("mtaenv: %s (pid %d) did not stop within %v; killing %v", m.name, leader, grace, testenv.SessionPIDs(leader))
	}
	_ = syscall.Kill(-leader, syscall.SIGKILL)
	for _, pid := range testenv.SessionPIDs(leader) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !gone(10 * time.Second) {
		m.t.Errorf("mtaenv: %s (pid %d): processes survive SIGKILL: %v", m.name, leader, testenv.SessionPIDs(leader))
	}
}

// CPU returns the user+sys CPU time the instance's processes have used so
// far (testenv.SessionCPU of its session: Postfix's master and the
// services it runs, the Sendmail daemon and its children; Postfix's
// services are all the master's children, so none is missed). 0 when no
// instance runs.
func (m *Instance) CPU() time.Duration {
	if m.leader == 0 {
		return 0
	}
	return testenv.SessionCPU(m.leader)
}
