package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// binaryDaemon is the real binary serving with a config file the test
// rewrites before each SIGHUP.
type binaryDaemon struct {
	cmd    *exec.Cmd
	addr   string // milter HOST:PORT
	http   string
	config string // the config file's path
	head   string // its listen and http lines
	log    *logWatch
	exited chan error
}

// startBinary runs the plain binary: `stormguard serve --config FILE`
// with yaml after the listen and http.listen lines.
func startBinary(t *testing.T, yaml string) *binaryDaemon {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: runs the plain binary, not the race detector's")
	}
	d := &binaryDaemon{
		addr:   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		http:   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		config: filepath.Join(t.TempDir(), "stormguard.yaml"),
		exited: make(chan error, 1),
	}
	d.head = "listen: inet:" + d.addr + "\nhttp:\n  listen: " + d.http + "\n"
	d.write(t, yaml)
	watch, logw := newLogWatch()
	d.log = watch
	d.cmd = exec.Command(plainBinary, "serve", "--config", d.config)
	d.cmd.Stderr = logw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait(); logw.Close() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
			t.Error("no exit 20s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", watch.String())
		}
	})
	watch.wait(t, 0, "stormguard started")
	return d
}

func (d *binaryDaemon) write(t *testing.T, yaml string) {
	t.Helper()
	if err := os.WriteFile(d.config, []byte(d.head+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload rewrites the config file with yaml, sends SIGHUP and waits for
// the log line with every part, after which the reload is in force.
func (d *binaryDaemon) reload(t *testing.T, yaml string, parts ...string) int {
	t.Helper()
	from := d.log.len()
	d.write(t, yaml)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	return d.log.wait(t, from, parts...)
}

// decideReply runs one reply-all (list and boss) to root through a new
// milter session, as an MTA would, and returns the SMTP code at end of
// headers (250 for accept or continue).
func decideReply(t *testing.T, addr string, i int, root string) uint16 {
	t.Helper()
	sess, err := gomilter.NewClient("tcp", addr).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	sender := fmt.Sprintf("user%d@example.org", i)
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return sess.Conn("client", gomilter.FamilyInet, 25, "192.0.2.1") },
		func() (*gomilter.Action, error) { return sess.Helo("client") },
		func() (*gomilter.Action, error) { return sess.Mail(sender, "") },
		func() (*gomilter.Action, error) { return sess.Rcpt(staffList, "") },
		func() (*gomilter.Action, error) { return sess.Rcpt(boss, "") },
		func() (*gomilter.Action, error) { return sess.DataStart() },
		func() (*gomilter.Action, error) { return sess.HeaderField("From", "<"+sender+">", nil) },
		func() (*gomilter.Action, error) { return sess.HeaderField("To", staffList+", "+boss, nil) },
		func() (*gomilter.Action, error) { return sess.HeaderField("Subject", "RE: reload", nil) },
		func() (*gomilter.Action, error) {
			return sess.HeaderField("Message-ID", fmt.Sprintf("<r%d.%s>", i, root), nil)
		},
		func() (*gomilter.Action, error) { return sess.HeaderField("In-Reply-To", "<"+root+">", nil) },
		func() (*gomilter.Action, error) { return sess.HeaderField("References", "<"+root+">", nil) },
		func() (*gomilter.Action, error) { return sess.HeaderEnd() },
	}
	var act *gomilter.Action
	for _, step := range steps {
		if act, err = step(); err != nil {
			t.Fatalf("reply %d to %s: %v", i, root, err)
		}
	}
	if act.Type == gomilter.ActionRejectWithCode || act.Type == gomilter.ActionReject || act.Type == gomilter.ActionTempFail {
		return act.SMTPCode
	}
	return 250
}

// firstRefused sends replies to a new thread until one is refused and
// returns its number (1-based), or 0 if none of max is.
func firstRefused(t *testing.T, addr, root string, max int) int {
	t.Helper()
	for i := 1; i <= max; i++ {
		if code := decideReply(t, addr, i, root); code != 250 {
			if code != 550 {
				t.Fatalf("reply %d to %s: %d, want 250 or 550", i, root, code)
			}
			return i
		}
	}
	return 0
}

// checkText is what `stormguard check` prints for the config file at path
// (its error, without the "stormguard: " every command error starts with).
func checkText(t *testing.T, path string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := execute(context.Background(), []string{"check", "--config", path}, &out, &errb); code == 0 {
		t.Fatalf("check accepted %s:\n%s", path, out.String())
	}
	return strings.TrimPrefix(strings.TrimSpace(errb.String()), "stormguard: ")
}

// TestReloadOnSIGHUP: the real binary re-reads its file on SIGHUP. New
// limits decide the next thread; an invalid file is refused with check's
// text and the running limits stay; a key that needs a restart is named
// and keeps its value; the daemon runs on through all of it.
func TestReloadOnSIGHUP(t *testing.T) {
	const lists = "lists:\n  " + staffList + ": 3000\n"
	d := startBinary(t, lists+"policy:\n  max_replies: 10\n")
	if n := firstRefused(t, d.addr, "before@example.org", 12); n != 11 {
		t.Fatalf("max_replies 10: first refused reply %d, want 11", n)
	}

	// An open milter connection (an MTA's, between messages) outlives
	// every reload below.
	held, err := gomilter.NewClient("tcp", d.addr).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Conn("client", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}

	d.reload(t, lists+"policy:\n  max_replies: 3\n", "configuration reloaded", "changed=policy.max_replies", "max_replies=3")
	if n := firstRefused(t, d.addr, "after@example.org", 5); n != 4 {
		t.Fatalf("after reload to max_replies 3: first refused reply %d, want 4", n)
	}

	bad := lists + "policy:\n  max_replies: 1\n  action: bounce\n"
	want := checkText(t, testenv.ConfigFile(t, d.head+bad))
	from := d.log.len()
	i := d.reload(t, bad, "level=ERROR", "configuration reload refused")
	line := d.log.line(i)
	if !strings.Contains(line, "err="+strconv.Quote(want)) && !strings.Contains(line, "err="+want) {
		t.Errorf("error line %q does not carry check's text %q", line, want)
	}
	// Only the reload's own lines count: the decision and event lines of
	// the replies before it may reach the log watcher after from.
	n := 0
	for _, l := range strings.Split(d.log.since(from), "\n") {
		if strings.Contains(l, `msg="configuration`) || strings.Contains(l, `msg="config key`) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("refused reload logged %d lines about the configuration, want 1:\n%s", n, d.log.since(from))
	}
	// Still max_replies 3 (not the bad file's 1).
	if n := firstRefused(t, d.addr, "still@example.org", 5); n != 4 {
		t.Fatalf("after a refused reload: first refused reply %d, want 4 (max_replies 3 in force)", n)
	}

	// A restart-only key: named, kept; the live change beside it applies.
	d.reload(t, lists+"policy:\n  max_replies: 2\nmilter:\n  max_sessions: 77\n",
		"configuration reloaded", "changed=policy.max_replies", "restart_needed=milter.max_sessions")
	if !strings.Contains(d.log.since(from), `msg="config key changed; takes effect at restart" key=milter.max_sessions`) {
		t.Errorf("no warning naming milter.max_sessions:\n%s", d.log.since(from))
	}
	if n := firstRefused(t, d.addr, "restart@example.org", 5); n != 3 {
		t.Fatalf("after reload to max_replies 2: first refused reply %d, want 3", n)
	}

	// Metrics count both kinds; the held connection still answers.
	_, body := get(t, "http://"+d.http+"/metrics")
	for _, m := range []string{`stormguard_config_reloads_total{result="ok"} 2`, `stormguard_config_reloads_total{result="failed"} 1`,
		"stormguard_config_last_reload_success_timestamp_seconds"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	for _, l := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(l, `msg="config`) {
			t.Log(l)
		}
	}
	if _, err := held.Helo("client"); err != nil {
		t.Errorf("a milter connection opened before the reloads: %v", err)
	}
	select {
	case err := <-d.exited:
		t.Fatalf("the daemon exited: %v", err)
	default:
	}
}

// TestReloadUnderLoad: SIGHUP ten times, alternating two valid files,
// while four SMTP clients send through the real Postfix whose milter is
// the real binary: every message gets its 250 (Postfix's milter_default_
// action here is tempfail, so a dropped milter connection would show as a
// 451), every one was decided by the daemon, and Postfix logs no milter
// error.
func TestReloadUnderLoad(t *testing.T) {
	const lists = "lists:\n  " + staffList + ": 3000\n"
	configs := [2]string{lists + "policy:\n  max_replies: 10\n", lists + "policy:\n  max_replies: 500\n  min_audience: 2000\n"}
	d := startBinary(t, configs[0])
	sink := smtpenv.StartSink(t)
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: "inet:" + d.addr})

	const clients, reloads = 4, 10
	var sent, bad atomic.Int64
	var mu sync.Mutex
	var firstBad string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := smtpenv.NewMessage().Add("From", "<ann@example.org>").Add("To", "bob@example.org").
					Add("Subject", "load").Add("Message-ID", fmt.Sprintf("<load-%d-%d@example.org>", c, i)).
					SetBody("hello\n").Bytes()
				r, err := smtpenv.Send(pf.Addr, "ann@example.org", []string{"bob@example.org"}, msg)
				sent.Add(1)
				if err != nil || !r.OK() {
					bad.Add(1)
					mu.Lock()
					if firstBad == "" {
						firstBad = fmt.Sprintf("client %d message %d: %v %v", c, i, r, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range reloads {
		d.reload(t, configs[(i+1)%2], "configuration reloaded")
		// Mail goes on between reloads: wait for more of it (polling the
		// counter, with a deadline).
		n := sent.Load()
		deadline := time.Now().Add(30 * time.Second)
		for sent.Load() < n+8 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d messages sent through Postfix during %d reloads, %d not accepted", sent.Load(), reloads, bad.Load())
	if bad.Load() > 0 {
		t.Errorf("%d messages not accepted; first: %s", bad.Load(), firstBad)
	}
	if sent.Load() < reloads*8 {
		t.Errorf("only %d messages sent", sent.Load())
	}
	// Every message went through the milter: the daemon decided each.
	decided := 0.0
	for k, v := range scrape(t, &daemon{http: d.http}) {
		if strings.HasPrefix(k, "stormguard_decisions_total{") {
			decided += v
		}
	}
	if int64(decided) != sent.Load() {
		t.Errorf("the daemon decided %v messages, %d were sent", decided, sent.Load())
	}
	for _, l := range strings.Split(pf.Log(), "\n") {
		if strings.Contains(strings.ToLower(l), "milter") && (strings.Contains(l, "warning") || strings.Contains(l, "error")) {
			t.Errorf("postfix: %s", l)
		}
	}
	if n := strings.Count(d.log.String(), "configuration reloaded"); n != reloads {
		t.Errorf("%d reloads logged, want %d", n, reloads)
	}
}

// line is the i-th log line.
func (w *logWatch) line(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines[i]
}

// since is the log from line from on.
func (w *logWatch) since(from int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines[from:], "\n")
}

// TestReloadRefusesListlessFile: a SIGHUP that finds the file emptied (or
// rewritten without its lists) while lists are in force is refused with
// the reason in the log; the running lists and limits stay, so a storm to
// the list is still stopped at the running max_replies.
func TestReloadRefusesListlessFile(t *testing.T) {
	const lists = "lists:\n  " + staffList + ": 3000\n"
	d := startBinary(t, lists+"policy:\n  max_replies: 10\n")
	for _, file := range []string{"", "policy:\n  max_replies: 10\n"} {
		from := d.log.len()
		i := d.reload(t, file, "level=ERROR", "configuration reload refused")
		line := d.log.line(i)
		if !strings.Contains(line, "names no list") {
			t.Errorf("file %q: refusal %q does not say the file names no list", file, line)
		}
		if strings.Contains(d.log.since(from), "configuration reloaded") {
			t.Errorf("file %q: reloaded anyway:\n%s", file, d.log.since(from))
		}
		root := fmt.Sprintf("listless-%d@example.org", len(file))
		n := firstRefused(t, d.addr, root, 12)
		t.Logf("file %q: reload refused; first refused reply to the list %d (max_replies 10 in force)", file, n)
		if n != 11 {
			t.Fatalf("file %q: first refused reply %d, want 11 (the running lists and max_replies 10)", file, n)
		}
	}
	// A file that keeps a list reloads as ever.
	d.reload(t, lists+"policy:\n  max_replies: 3\n", "configuration reloaded", "changed=policy.max_replies")
	_, body := get(t, "http://"+d.http+"/metrics")
	for _, m := range []string{`stormguard_config_reloads_total{result="ok"} 1`, `stormguard_config_reloads_total{result="failed"} 2`} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}
