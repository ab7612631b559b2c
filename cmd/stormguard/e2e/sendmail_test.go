package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/sendmailenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// readmeSendmailLine returns the INPUT_MAIL_FILTER line of
// deploy/sendmail.mc, after checking that the README shows the same line.
func readmeSendmailLine(t *testing.T) string {
	t.Helper()
	f, err := os.Open("../../../deploy/sendmail.mc")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var line string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "INPUT_MAIL_FILTER(") {
			line = sc.Text()
			break
		}
	}
	if line == "" || !strings.Contains(line, "S=inet:7357@127.0.0.1") {
		t.Fatalf("deploy/sendmail.mc: no INPUT_MAIL_FILTER line with S=inet:7357@127.0.0.1 (got %q)", line)
	}
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "\n"+line+"\n") {
		t.Fatalf("README.md does not show deploy/sendmail.mc's line %s", line)
	}
	return line
}

// withPort points the snippet at the test daemon's port.
func withPort(line, addr string) string {
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	return strings.Replace(line, "S=inet:7357@127.0.0.1", "S=inet:"+port+"@127.0.0.1", 1)
}

// startStoppableDaemon is startDaemon with a stop function, so a test can
// take stormguard away from under a running MTA. stop waits until serve
// has returned; it runs at cleanup too if the test does not call it.
func startStoppableDaemon(t *testing.T, yaml string) (*daemon, func()) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	path := filepath.Join(t.TempDir(), "stormguard.yaml")
	if err := os.WriteFile(path, []byte("listen: inet:"+addr+"\nhttp:\n  listen: \"\"\n"+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	watch, logw := newLogWatch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--config", path}, io.Discard, logw) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d; log:\n%s", code, watch.String())
		}
		logw.Close()
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("daemon %s log:\n%s", addr, watch.String())
		}
	})
	watch.wait(t, 0, "stormguard started")
	return &daemon{addr: addr, log: watch}, stop
}

// TestEndToEndThroughSendmail runs a storm through a real Sendmail 8.17
// whose sendmail.mc holds the README's INPUT_MAIL_FILTER line (port
// changed to the test daemon's), with the memory store; then stops
// stormguard and shows what F=T does.
func TestEndToEndThroughSendmail(t *testing.T) {
	line := readmeSendmailLine(t)
	sink := smtpenv.StartSink(t)
	d, stop := startStoppableDaemon(t, "lists:\n  "+staffList+": 3000\n")
	sm := sendmailenv.Start(t, sendmailenv.Options{RelayTo: sink.Addr, Milter: withPort(line, d.addr)})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sendmail log:\n%s", sm.Log())
		}
	})
	t.Logf("sendmail.mc milter line: %s", withPort(line, d.addr))
	send := func(from string, rcpts []string, data []byte) smtpenv.Reply {
		t.Helper()
		r, err := smtpenv.Send(sm.Addr, from, rcpts, data)
		if err != nil {
			t.Fatalf("smtp: %v", err)
		}
		return r
	}
	replyAll := func(i int, root, subject string) smtpenv.Reply {
		t.Helper()
		return send(fmt.Sprintf("user%d@example.org", i), []string{staffList, boss}, replyAllMail(i, root, staffList, subject))
	}

	const subject = "Test message, please ignore"
	root := "storm-sm@example.org"
	thread := threadOf(root)
	if r := send(boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	const maxReplies = 10 // the default policy.max_replies
	for i := 1; i <= maxReplies; i++ {
		if r := replyAll(i, root, subject); !r.OK() {
			t.Fatalf("reply-all %d of %d: %v, want 250", i, maxReplies, r)
		}
	}
	r := replyAll(maxReplies+1, root, subject)
	if r.Stage != "end" || r.Code != 550 || !strings.HasPrefix(r.Text, "5.7.1 ") || !strings.Contains(r.Text, "(thread "+string(thread)+")") {
		t.Fatalf("reply-all %d: %v, want 550 5.7.1 naming thread %s after the final dot", maxReplies+1, r, thread)
	}
	t.Logf("refusal Sendmail sent: %d %s", r.Code, r.Text)
	d.log.wait(t, 0, "action=reject", "thread="+string(thread))

	private := smtpenv.NewMessage().Add("From", "<user99@example.org>").Add("To", boss).
		Add("Subject", "RE: "+subject).Add("Message-ID", "<private-99-sm@example.org>").
		Add("In-Reply-To", "<"+root+">").Add("References", "<"+root+">").SetBody("Thanks.\n").Bytes()
	if r := send("user99@example.org", []string{boss}, private); !r.OK() {
		t.Fatalf("reply to the sender alone: %v, want 250", r)
	}

	// Every accepted message reached the sink, with every recipient; the
	// refused one did not.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accepted := []string{"<" + root + ">", "<private-99-sm@example.org>"}
	for i := 1; i <= maxReplies; i++ {
		accepted = append(accepted, fmt.Sprintf("<reply-%d-%s>", i, root))
	}
	for _, id := range accepted {
		m, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == id })
		if err != nil {
			t.Fatalf("accepted %s never delivered: %v", id, err)
		}
		if strings.HasPrefix(id, "<reply-") && (!m.HasRcpt(staffList) || !m.HasRcpt(boss)) {
			t.Errorf("%s delivered to %v, want %s and %s", id, m.To, staffList, boss)
		}
	}
	for _, m := range sink.Messages() {
		if id := m.Header("Message-ID"); strings.HasPrefix(id, fmt.Sprintf("<reply-%d-", maxReplies+1)) {
			t.Errorf("refused reply %s was delivered", id)
		}
	}

	// stormguard stops; Sendmail, still running, cannot reach it.
	stop()
	mail := smtpenv.NewMessage().Add("From", "<user50@example.org>").Add("To", boss).
		Add("Subject", "while stormguard is down").Add("Message-ID", "<down-sm@example.org>").SetBody("x\n").Bytes()

	t.Run("F=T: stormguard down tempfails", func(t *testing.T) {
		r, err := smtpenv.Send(sm.Addr, "user50@example.org", []string{boss}, mail)
		if err != nil {
			t.Fatal(err)
		}
		// Sendmail greets and answers EHLO as usual, then tempfails MAIL
		// ("Milter: initialization failed, temp failing commands").
		if r.Stage != "mail" || r.Code != 451 || !strings.HasPrefix(r.Text, "4.3.2 ") {
			t.Fatalf("stormguard down, F=T: %v, want 451 4.3.2 at MAIL FROM", r)
		}
		t.Logf("stormguard down, F=T: %v", r)
	})

	t.Run("no F flag: stormguard down accepts", func(t *testing.T) {
		noFlag := strings.Replace(withPort(line, d.addr), " F=T,", "", 1)
		if noFlag == withPort(line, d.addr) {
			t.Fatalf("cannot remove F=T from %s", line)
		}
		sm2 := sendmailenv.Start(t, sendmailenv.Options{RelayTo: sink.Addr, Milter: noFlag})
		r, err := smtpenv.Send(sm2.Addr, "user50@example.org", []string{boss}, mail)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			t.Fatalf("stormguard down, no F flag (%s): %v, want 250", noFlag, r)
		}
		t.Logf("stormguard down, no F flag: %v", r)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == "<down-sm@example.org>" }); err != nil {
			t.Fatalf("accepted while stormguard was down, never delivered: %v\n%s", err, sm2.Log())
		}
	})
	if !strings.Contains(sm.Log(), "Milter (stormguard)") {
		t.Errorf("sendmail log has no line about the stormguard milter:\n%s", sm.Log())
	}
}
