package identity

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/bench/miltermsg"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
)

// redisSet is the Redis one revision's daemons share: one master, or a
// three-master Cluster.
type redisSet struct {
	seed    string   // what the daemons are given: a proxy when counting
	servers []string // the redis-servers themselves (for INFO)
}

// startRedisSet starts a standalone Redis or a three-master Cluster. With
// a recorder, every server sits behind a counting proxy; in a Cluster each
// master announces its proxy's port (cluster-announce-port), so the
// daemons' Cluster clients, which connect where CLUSTER SLOTS tells them,
// go through the proxies too.
func startRedisSet(t testing.TB, cluster bool, rec *Recorder) redisSet {
	t.Helper()
	var rs redisSet
	if cluster {
		rs.servers = redisenv.StartClusterOf(t, 3)
	} else {
		rs.servers = []string{redisenv.Start(t)}
	}
	rs.seed = rs.servers[0]
	if rec == nil {
		return rs
	}
	proxied := map[string]bool{}
	for i, s := range rs.servers {
		p, err := NewProxy(rec, s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		if i == 0 {
			rs.seed = p.Addr
		}
		proxied[p.Addr] = true
		if cluster {
			redisenv.CLI(t, s, "CONFIG", "SET", "cluster-announce-port", strconv.Itoa(p.Port()))
		}
	}
	if !cluster {
		return rs
	}
	// Wait until every master hands out only proxy addresses (gossip
	// carries each master's new port to the others).
	deadline := time.Now().Add(15 * time.Second)
	for _, s := range rs.servers {
		c := redis.NewClient(&redis.Options{Addr: s, DisableIdentity: true})
		for {
			slots, err := c.ClusterSlots(context.Background()).Result()
			ok := err == nil && len(slots) > 0
			for _, sl := range slots {
				for _, n := range sl.Nodes {
					ok = ok && proxied[n.Addr]
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster master %s still announces %v (err %v), want the proxies %v", s, slots, err, proxied)
			}
			time.Sleep(50 * time.Millisecond) // polling the servers' gossip, which has no event to wait on
		}
		c.Close()
	}
	return rs
}

// redisCPU is the CPU the servers have used (INFO cpu, user + system).
func redisCPU(t testing.TB, servers []string) time.Duration {
	var sum time.Duration
	for _, s := range servers {
		c := redis.NewClient(&redis.Options{Addr: s, DisableIdentity: true})
		info, err := c.Info(context.Background(), "cpu").Result()
		c.Close()
		if err != nil {
			t.Fatalf("INFO cpu of %s: %v", s, err)
		}
		for line := range strings.Lines(info) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("INFO cpu of %s: %s", s, line)
				}
				sum += time.Duration(f * float64(time.Second))
			}
		}
	}
	return sum
}

// daemon is one `stormguard serve` of the revision under test.
type daemon struct {
	node string
	addr string // milter host:port
	pid  int
	log  *logWriter
}

// logWriter keeps a child's log in a file, signals its start line
// (marker) and keeps the warnings and errors (a store error is one).
type logWriter struct {
	mu       sync.Mutex
	f        *os.File
	marker   string
	started  chan struct{}
	once     sync.Once
	problems []string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for line := range strings.Lines(string(p)) {
		if strings.Contains(line, w.marker) {
			w.once.Do(func() { close(w.started) })
		}
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			w.problems = append(w.problems, strings.TrimSpace(line))
		}
	}
	return w.f.Write(p)
}

// Problems returns the warnings and errors logged so far.
func (w *logWriter) Problems() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.problems...)
}

// startDaemon runs bin serve as node with the Redis store on seed, its
// defaults otherwise (info logs to a file, store.refresh 5s, the report
// recorder on), the bench list in its config and no HTTP server. With a
// recorder its connections are attributed to node. timeout is
// redis.timeout, 0 for the default (200ms).
func startDaemon(t testing.TB, bin, node string, rs redisSet, cluster bool, rec *Recorder, timeout time.Duration) *daemon {
	t.Helper()
	dir := t.TempDir()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	cfg := fmt.Sprintf(`listen: inet:%s
node: %s
store:
  backend: redis
redis:
  addrs: [%q]
  cluster: %v
lists:
  %s: %d
http:
  listen: ""
`, addr, node, rs.seed, cluster, ListAddr, ListSize)
	if timeout > 0 {
		cfg = strings.Replace(cfg, "redis:\n", fmt.Sprintf("redis:\n  timeout: %s\n", timeout), 1)
	}
	path := filepath.Join(dir, "stormguard.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Env = cleanEnv()
	pid, lw := startProcess(t, cmd, node, "stormguard started", rec)
	return &daemon{node: node, addr: addr, pid: pid, log: lw}
}

// startNoopProcess runs the no-op milter (../noop) in a child process (this
// test binary, see TestMain), so that the baseline pays what a daemon
// pays for being a process of its own.
func startNoopProcess(t testing.TB, node string) *daemon {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(cleanEnv(), noopEnv+"="+addr)
	pid, lw := startProcess(t, cmd, node, noopStarted, nil)
	return &daemon{node: node, addr: addr, pid: pid, log: lw}
}

// startProcess starts cmd (registering it with rec under name, if rec is
// set), logs its output to a file, waits for a line with marker, and
// stops it with SIGTERM when the test ends.
func startProcess(t testing.TB, cmd *exec.Cmd, name, marker string, rec *Recorder) (int, *logWriter) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	lw := &logWriter{f: f, marker: marker, started: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lw, lw
	start := func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	}
	if rec != nil {
		err = rec.Own(name, start)
	} else {
		_, err = start()
	}
	if err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		f.Close()
	})
	select {
	case <-lw.started:
	case <-exited:
		b, _ := os.ReadFile(f.Name())
		t.Fatalf("%s (%s) exited at start:\n%s", name, cmd.Path, b)
	case <-time.After(30 * time.Second):
		b, _ := os.ReadFile(f.Name())
		t.Fatalf("%s (%s) did not start:\n%s", name, cmd.Path, b)
	}
	return cmd.Process.Pid, lw
}

// cleanEnv is this process's environment without STORMGUARD_ settings,
// which would override the daemon's config file.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "STORMGUARD_") {
			env = append(env, e)
		}
	}
	return env
}

// processCPU is the CPU a process has used (user + system), from
// /proc/PID/stat in clock ticks (USER_HZ, 100 on Linux).
func processCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("CPU of %d: %v", pid, err)
	}
	// pid (comm) state ppid ... : utime and stime are the 14th and 15th
	// fields, the 12th and 13th after the comm.
	i := bytes.LastIndexByte(b, ')')
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		t.Fatalf("CPU of %d: %q", pid, b)
	}
	u, _ := strconv.ParseInt(fs[11], 10, 64)
	s, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// session is a milter connection to one daemon, as an MTA keeps it.
type session struct {
	client *gomilter.Client
	macros *gomilter.MacroBag
	s      *gomilter.ClientSession
}

func newSession(addr string) *session {
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroMTAFQDN, "mx.bench.example")
	macros.Set(gomilter.MacroDaemonName, "smtpd")
	return &session{client: gomilter.NewClient("tcp", addr), macros: macros}
}

// queueID sets the queue id (macro i) of the next messages, as Postfix
// gives it once a recipient is accepted; "" gives none.
func (s *session) queueID(id string) { s.macros.Set(gomilter.MacroQueueId, id) }

// open starts a milter session: negotiation, CONNECT, HELO.
func (s *session) open() error {
	cs, err := s.client.Session(s.macros)
	if err != nil {
		return err
	}
	if _, err := cs.Conn("client.bench.example", gomilter.FamilyInet, 25000, "192.0.2.1"); err != nil {
		cs.Close()
		return err
	}
	if _, err := cs.Helo("client.bench.example"); err != nil {
		cs.Close()
		return err
	}
	s.s = cs
	return nil
}

func (s *session) close() {
	if s.s != nil {
		s.s.Close()
		s.s = nil
	}
}

// send sends m (opening the session if needed) and returns the verdict and
// the time from end of headers to it. A failed session is closed.
func (s *session) send(m Mail) (string, time.Duration, error) {
	if s.s == nil {
		if err := s.open(); err != nil {
			return "", 0, err
		}
	}
	v, took, err := miltermsg.Send(s.s, m.From, m.Rcpts, m.Headers)
	if err != nil {
		s.close()
	}
	return v, took, err
}

// delivered: the verdict lets the message through.
func delivered(verdict string) bool { return verdict == "accept" || verdict == "continue" }
