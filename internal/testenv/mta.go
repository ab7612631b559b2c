package testenv

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
)

// MTA is what the private Postfix and Sendmail share: one temporary
// directory, removed when the test ends (after the instance's log is shown
// if the test failed), an SMTP port on 127.0.0.1, and the session of
// processes that is ended, down to the last one, when the test ends.
type MTA struct {
	Addr    string // SMTP host:port (127.0.0.1)
	Port    int
	Dir     string // the instance's base directory
	LogFile string // the instance's log

	t      testing.TB
	name   string // "postfix", "sendmail": in messages
	tag    string // in the 220 banner, to tell this instance from others
	leader int    // the session leader (Postfix's master, the Sendmail daemon); 0 when none runs
}

// mtaPort chooses an MTA's SMTP port; a variable so a test can hand out a
// taken port.
var mtaPort = FreePort

// newMTA makes the instance's directory, /tmp/PREFIX*, and registers its
// removal and the stop of its processes with t.
func newMTA(t testing.TB, name, prefix, logName string) *MTA {
	t.Helper()
	// Not t.TempDir: its parents are 0700 and long, where Postfix's
	// unprivileged processes must traverse the path, unix socket paths
	// must stay below 108 bytes and Sendmail refuses group- or
	// world-writable directories above its files; /tmp (sticky) passes.
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	m := &MTA{Dir: dir, LogFile: filepath.Join(dir, logName), t: t, name: name, tag: filepath.Base(dir)}
	// Registered first, so it runs last: after the stop below.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: %s log (%s):\n%s", name, m.LogFile, m.Log())
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("testenv: %s: remove %s: %v", name, dir, err)
		}
	})
	t.Cleanup(func() { m.stop(10 * time.Second) })
	return m
}

// addrInUse is what a daemon logs when it cannot bind its port: Postfix's
// start then fails, Sendmail keeps retrying.
const addrInUse = "Address already in use"

// start gives the instance a free port, calls launch to write its
// configuration and start it there (launch sets m.leader), and waits for
// its banner. When the log says the port was taken, it stops what launch
// started and tries another.
func (m *MTA) start(launch func() error) {
	m.t.Helper()
	for attempt := 1; ; attempt++ {
		m.Port = mtaPort(m.t)
		m.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port))
		_ = os.Remove(m.LogFile)
		err := launch()
		if err == nil {
			err = m.waitBanner(30 * time.Second)
		}
		if err == nil {
			return
		}
		if attempt < 5 && strings.Contains(m.Log(), addrInUse) {
			m.t.Logf("testenv: %s: port %d taken, trying another", m.name, m.Port)
			m.stop(0)
			continue
		}
		m.t.Fatalf("testenv: %s: %v\nlog:\n%s", m.name, err, m.Log())
	}
}

// waitBanner polls the SMTP port until this instance greets with 220.
func (m *MTA) waitBanner(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if m.leader != 0 && !processAlive(m.leader) {
			return fmt.Errorf("%s (pid %d) exited", m.name, m.leader)
		}
		if strings.Contains(m.Log(), addrInUse) {
			return fmt.Errorf("%s cannot listen on %s: %s", m.name, m.Addr, addrInUse)
		}
		line, err := banner(m.Addr)
		if err == nil && strings.HasPrefix(line, "220 ") && strings.Contains(line, m.tag) {
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

// outputFile is where a daemon started by the test writes its stdout and
// stderr.
func (m *MTA) outputFile() string { return filepath.Join(m.Dir, "output") }

// Log returns the instance's log so far followed by anything the daemon
// wrote to stdout or stderr; "" when there is nothing yet.
func (m *MTA) Log() string {
	b, _ := os.ReadFile(m.LogFile)
	if out, _ := os.ReadFile(m.outputFile()); len(out) > 0 {
		b = append(append(b, "--- stdout/stderr:\n"...), out...)
	}
	return string(b)
}

// stop SIGTERMs the session leader (Postfix's master and Sendmail pass it
// on to their children), waits up to grace for every process of its
// session to exit, and SIGKILLs what is left. The leader called setsid, so
// whatever it started shares its session id.
func (m *MTA) stop(grace time.Duration) {
	leader := m.leader
	if leader == 0 {
		return
	}
	m.leader = 0
	gone := func(limit time.Duration) bool {
		for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
			if !processAlive(leader) && len(sessionPIDs(leader)) == 0 {
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
		m.t.Logf("testenv: %s (pid %d) did not stop within %v; killing %v", m.name, leader, grace, sessionPIDs(leader))
	}
	_ = syscall.Kill(-leader, syscall.SIGKILL)
	for _, pid := range sessionPIDs(leader) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !gone(10 * time.Second) {
		m.t.Errorf("testenv: %s (pid %d): processes survive SIGKILL: %v", m.name, leader, sessionPIDs(leader))
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	st, ok := procStat(pid)
	return ok && st.state != "Z"
}

type procStatus struct {
	state   string
	session int
}

// procStat reads /proc/PID/stat.
func procStat(pid int) (procStatus, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStatus{}, false
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces and ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStatus{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return procStatus{}, false
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		return procStatus{}, false
	}
	return procStatus{state: f[0], session: sid}, true
}

// sessionPIDs lists the live (not zombie) processes whose session id is
// sid.
func sessionPIDs(sid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok && st.state != "Z" && st.session == sid {
			pids = append(pids, pid)
		}
	}
	return pids
}
