package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/testenv"
)

// limitedDaemon is the real binary, serving, under a 1,024 descriptor limit.
type limitedDaemon struct {
	cmd        *exec.Cmd
	milterAddr string
	httpAddr   string
	exited     chan error
}

// startLimitedDaemon runs the plain binary: `stormguard serve` under
// `prlimit --nofile=1024` (soft and hard: Go cannot raise it) with env.
// STORMGUARD_TEST_BINARY runs another build instead (to rerun the attack
// on an older one).
func startLimitedDaemon(t *testing.T, env ...string) *limitedDaemon {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: runs the plain binary, not the race detector's")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed: %v", err)
	}
	bin := os.Getenv("STORMGUARD_TEST_BINARY")
	if bin == "" {
		bin = plainBinary
	}
	d := &limitedDaemon{
		milterAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		httpAddr:   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		exited:     make(chan error, 1),
	}
	d.cmd = exec.Command(prlimit, "--nofile=1024:1024", bin, "serve")
	d.cmd.Env = append(append(os.Environ(), "STORMGUARD_LISTEN=inet:"+d.milterAddr, "STORMGUARD_HTTP_LISTEN="+d.httpAddr), env...)
	logPath := filepath.Join(t.TempDir(), "log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = logFile
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("daemon log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", d.milterAddr); err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-d.exited:
			t.Fatalf("stormguard exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("stormguard does not listen")
		}
		time.Sleep(20 * time.Millisecond) // polling for the listener, with a deadline
	}
}

// alive fails the test if the daemon has exited.
func (d *limitedDaemon) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("the daemon exited: %v", err)
	default:
	}
}

// vmRSS is the daemon's resident set in bytes (prlimit execs it: same pid).
func (d *limitedDaemon) vmRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/PID/status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// fds counts the daemon's open descriptors.
func (d *limitedDaemon) fds(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// metric reads one sample of the daemon's /metrics, -1 if absent.
func (d *limitedDaemon) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// milterNegotiate is an MTA's option negotiation (protocol 6, all actions
// and protocol steps offered).
var milterNegotiate = []byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff}

// negotiateIdle opens a milter connection and negotiates; it reports false
// if the daemon closed it unanswered.
func negotiateIdle(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial milter: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_, _ = c.Write(milterNegotiate)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		c.Close()
		return nil, false
	}
	n := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		c.Close()
		return nil, false
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, true
}

// decide runs one small message through a new milter session and returns
// the answer at end of headers, or an error if the session is refused.
func decide(addr string) (*gomilter.Action, error) {
	sess, err := gomilter.NewClient("tcp", addr).Session(gomilter.NewMacroBag())
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return sess.Conn("client", gomilter.FamilyInet, 25, "192.0.2.1") },
		func() (*gomilter.Action, error) { return sess.Helo("client") },
		func() (*gomilter.Action, error) { return sess.Mail("a@example.org", "") },
		func() (*gomilter.Action, error) { return sess.Rcpt("b@example.org", "") },
		func() (*gomilter.Action, error) { return sess.DataStart() },
		func() (*gomilter.Action, error) { return sess.HeaderField("Subject", "hello", nil) },
		func() (*gomilter.Action, error) { return sess.HeaderEnd() },
	}
	var act *gomilter.Action
	for _, step := range steps {
		if act, err = step(); err != nil {
			return nil, err
		}
	}
	return act, nil
}

// TestBinarySurvivesConnectionFloods: under a 1,024 descriptor limit, 1,000
// idle HTTP keep-alive connections and 1,000 idle negotiated milter
// connections (twice milter.max_sessions, 500) must not end Serve with
// "accept4: too many open files" and the daemon with status 1: the
// connections beyond the limits are closed and counted, the daemon stays
// up, and once the idle ones are reaped a new MTA connection gets a real
// decision and /healthz answers.
func TestBinarySurvivesConnectionFloods(t *testing.T) {
	d := startLimitedDaemon(t, "STORMGUARD_MILTER_IDLE_TIMEOUT=10s", "STORMGUARD_HTTP_IDLE_TIMEOUT=5s")
	const flood = 1000

	served := 0
	for i := range flood {
		// From 250 loopback addresses, 4 each: under
		// http.max_connections_per_client (8), so the total cap decides.
		from := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i%250/200), byte(1+i%250%200))}
		c, err := (&net.Dialer{LocalAddr: from}).Dial("tcp", d.httpAddr)
		if err != nil {
			t.Fatalf("dial http: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: stormguard\r\n\r\n"); err != nil {
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			continue // closed: beyond http.max_connections
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetDeadline(time.Time{})
		served++ // and left open, idle
	}
	d.alive(t)
	if served != 64 {
		t.Errorf("HTTP: %d keep-alive connections served, want http.max_connections = 64", served)
	}

	negotiated := 0
	for range flood {
		if _, ok := negotiateIdle(t, d.milterAddr); ok {
			negotiated++
		}
	}
	d.alive(t)
	if negotiated != 500 {
		t.Errorf("milter: %d sessions negotiated, want milter.max_sessions = 500", negotiated)
	}
	fds := d.fds(t)
	t.Logf("after %d HTTP and %d milter connections: %d descriptors open in the daemon (limit 1024), %d HTTP and %d milter connections held",
		flood, flood, fds, served, negotiated)
	if fds >= 1024 {
		t.Errorf("%d descriptors open: at the limit", fds)
	}

	// Idle keep-alives are reaped after http.idle_timeout: /healthz again.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://" + d.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		d.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("/healthz never answered again: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling until the idle ones are reaped, with a deadline
	}
	// Idle milter sessions are reaped after milter.idle_timeout: a real decision again.
	for {
		act, err := decide(d.milterAddr)
		if err == nil {
			if act.Type != gomilter.ActionAccept {
				t.Errorf("small message: got %v, want accept", act)
			}
			break
		}
		d.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("no milter decision after the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling until the idle ones are reaped, with a deadline
	}
	if got := d.metric(t, `stormguard_connections_refused_total{listener="milter"}`); got < flood-500 {
		t.Errorf("milter refusals counted: %v, want at least %d", got, flood-500)
	}
	if got := d.metric(t, `stormguard_connections_refused_total{listener="http"}`); got < flood-64 {
		t.Errorf("http refusals counted: %v, want at least %d", got, flood-64)
	}
}

// TestBinaryRSSUnderStalledPackets: 100 milter connections that each
// declare a 4 MiB packet, send 64 KiB of it and stall must not hold 4 MiB
// each (441 MB RSS, were the packet buffered whole): each holds about
// what it sent.
func TestBinaryRSSUnderStalledPackets(t *testing.T) {
	d := startLimitedDaemon(t)
	before := d.vmRSS(t)
	const conns, sent = 100, 64 << 10
	port := d.milterAddr[strings.LastIndexByte(d.milterAddr, ':')+1:]
	for range conns {
		c, ok := negotiateIdle(t, d.milterAddr)
		if !ok {
			t.Fatal("negotiation refused")
		}
		pkt := append([]byte{0, 0x40, 0, 0, 'L'}, make([]byte, sent)...) // declares 4 MiB
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	waitAllRead(t, port)
	d.alive(t)
	after := d.vmRSS(t)
	heap := d.metric(t, "go_memstats_heap_inuse_bytes")
	t.Logf("VmRSS %.1f MB before, %.1f MB with %d stalled packets declaring 4 MiB (%d KiB sent each); Go heap in use %.1f MB",
		float64(before)/1e6, float64(after)/1e6, conns, sent>>10, heap/1e6)
	// Fresh pages the old code allocated and never touched were not
	// resident: the heap in use shows the declared lengths whatever the
	// kernel does with them.
	if after > 100e6 || heap > 100e6 {
		t.Errorf("VmRSS %.1f MB, heap in use %.1f MB with %d stalled 4 MiB packets, want both < 100 MB", float64(after)/1e6, heap/1e6, conns)
	}
	if act, err := decide(d.milterAddr); err != nil || act.Type != gomilter.ActionAccept {
		t.Errorf("a new session during the attack: %v, %v; want accept", act, err)
	}
}

// waitAllRead waits until the daemon has read every byte sent to its
// milter port: no established socket on it has a receive queue
// (/proc/net/tcp).
func waitAllRead(t *testing.T, port string) {
	t.Helper()
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf(":%04X", p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		pending := 0
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 5 || !strings.HasSuffix(f[1], local) || f[3] != "01" {
				continue
			}
			if _, rx, _ := strings.Cut(f[4], ":"); strings.Trim(rx, "0") != "" {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still have unread bytes", pending)
		}
		time.Sleep(20 * time.Millisecond) // polling the kernel's queues, with a deadline
	}
}
