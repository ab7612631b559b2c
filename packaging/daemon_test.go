package packaging

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/bench/miltermsg"
	"github.com/stormguard/stormguard/internal/testenv"
)

// daemon is a running stormguard serve.
type daemon struct {
	cmd    *exec.Cmd
	milter string // HOST:PORT
	http   string // HOST:PORT
	exited chan error

	mu      sync.Mutex
	log     []string
	newLine chan struct{} // a line was logged (buffered 1)
}

// start runs argv with the listen addresses moved to free loopback ports
// through the environment (STORMGUARD_LISTEN, STORMGUARD_HTTP_LISTEN win
// over the config file), so it cannot collide with a daemon already on
// 7357 and 9357; env adds variables. It returns once the daemon logs
// "stormguard started", and stops it with SIGTERM when the test ends.
func start(t *testing.T, argv []string, env ...string) *daemon {
	t.Helper()
	d := &daemon{
		milter:  fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		http:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		exited:  make(chan error, 1),
		newLine: make(chan struct{}, 1),
	}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Dir = "/"
	d.cmd.Env = append(append(os.Environ(), "STORMGUARD_LISTEN=inet:"+d.milter, "STORMGUARD_HTTP_LISTEN="+d.http), env...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			d.mu.Lock()
			d.log = append(d.log, sc.Text())
			d.mu.Unlock()
			select {
			case d.newLine <- struct{}{}:
			default:
			}
			if strings.Contains(sc.Text(), "stormguard started") {
				once.Do(func() { close(started) })
			}
		}
		d.exited <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.stop(t)
		}
	})
	select {
	case <-started:
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("%v exited before it started: %v\n%s", argv, err, d.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not log \"stormguard started\" in 30s:\n%s", argv, d.logText())
	}
	return d
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.log, "\n")
}

// waitLog waits until a line logged at index from or later holds part,
// and returns the index after it.
func (d *daemon) waitLog(t *testing.T, from int, part string) int {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		d.mu.Lock()
		for i := from; i < len(d.log); i++ {
			if strings.Contains(d.log[i], part) {
				d.mu.Unlock()
				return i + 1
			}
		}
		from = len(d.log)
		d.mu.Unlock()
		select {
		case <-d.newLine:
		case <-deadline:
			t.Fatalf("no %q in the log in 20s:\n%s", part, d.logText())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, d.logText())
		}
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("no exit 20s after SIGTERM:\n%s", d.logText())
	}
}

// scrape returns the daemon's /metrics.
func (d *daemon) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// storm sends replies to all of list (which must count at least
// policy.min_audience) in one thread until one is refused, and returns
// the verdicts.
func (d *daemon) storm(t *testing.T, list string, max int) []string {
	t.Helper()
	s := d.session(t)
	defer s.Close()
	const root = "announcement.1@example.org"
	var verdicts []string
	for i := 1; i <= max; i++ {
		from := fmt.Sprintf("user%d@example.org", i)
		v, _, err := miltermsg.Send(s, from, []string{list, "ceo@example.org"}, [][2]string{
			{"From", "<" + from + ">"},
			{"To", list + ", ceo@example.org"},
			{"Subject", "RE: announcement"},
			{"Message-ID", fmt.Sprintf("<reply.%d@example.org>", i)},
			{"In-Reply-To", "<" + root + ">"},
			{"References", "<" + root + ">"},
		})
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		verdicts = append(verdicts, v)
		if v != "accept" && v != "continue" {
			break
		}
	}
	return verdicts
}

// execStart reads the unit's User=, ExecStart= and ExecReload= lines.
func execStart(t *testing.T, unit string) (usr string, argv, reload []string) {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "User="); ok {
			usr = v
		}
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			argv = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "ExecReload="); ok {
			reload = strings.Fields(v)
		}
	}
	if usr == "" || len(argv) == 0 || len(reload) == 0 {
		t.Fatalf("%s: no User=, ExecStart= or ExecReload= line", unit)
	}
	return usr, argv, reload
}

// runUnitStorm runs the installed unit's ExecStart line as its User (and
// that user's groups, with no new privileges, as the unit does), registers
// a list with `stormguard lists set` through the daemon's admin API, and
// drives a storm through it: the 11th reply to all is refused (policy
// max_replies 10, the packaged config's default). Then the unit's
// ExecReload line makes it reload its configuration.
func runUnitStorm(t *testing.T, unit string) {
	t.Helper()
	usr, argv, reload := execStart(t, unit)
	u, err := user.Lookup(usr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unit %s: User=%s ExecStart=%s", unit, usr, strings.Join(argv, " "))
	wrapped := append([]string{"setpriv", "--reuid=" + usr, "--regid=" + usr, "--init-groups", "--no-new-privs", "--"}, argv...)
	d := start(t, wrapped)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[0] == "Uid:" {
			if f[1] != u.Uid || f[2] != u.Uid {
				t.Errorf("daemon runs as uid %s/%s, want %s's %s", f[1], f[2], usr, u.Uid)
			}
			t.Logf("daemon pid %d: %s", d.cmd.Process.Pid, line)
		}
	}

	const list = "all-staff@example.org"
	cmd := exec.Command("/usr/bin/stormguard", "lists", "set", list, "5000")
	cmd.Env = append(os.Environ(), "STORMGUARD_HTTP_LISTEN="+d.http)
	out, err := cmd.CombinedOutput()
	t.Logf("$ stormguard lists set %s 5000\n%s", list, out)
	if err != nil {
		t.Fatalf("stormguard lists set: %v", err)
	}

	verdicts := d.storm(t, list, 20)
	t.Logf("storm over the milter protocol: %d replies, verdicts %v", len(verdicts), verdicts)
	if len(verdicts) != 11 || verdicts[10] != "reject" {
		t.Errorf("verdicts %v: want 10 let through and the 11th rejected", verdicts)
	}
	// systemctl reload: the unit's ExecReload line with $MAINPID.
	for i, a := range reload {
		reload[i] = strings.ReplaceAll(a, "$MAINPID", fmt.Sprint(d.cmd.Process.Pid))
	}
	d.mu.Lock()
	from := len(d.log)
	d.mu.Unlock()
	run(t, reload[0], reload[1:]...)
	d.waitLog(t, from, "configuration reloaded")

	metrics := d.scrape(t)
	for _, want := range []string{"stormguard_storms_detected_total 1\n", `stormguard_decisions_total{action="reject"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	d.stop(t)
	t.Logf("daemon log:\n%s", d.logText())
}
