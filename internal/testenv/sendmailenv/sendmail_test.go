package sendmailenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// TestSendmailTreeMissing: without the Sendmail that ./scripts/test.sh
// unpacks, the test fails under STORMGUARD_REQUIRE_SERVERS=1 and is
// skipped otherwise, naming the script and the directory; nothing is
// fetched.
func TestSendmailTreeMissing(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	tree := filepath.Join(cache, "stormguard-test", "sendmail", "root")
	for _, required := range []string{"1", ""} {
		t.Setenv(testenv.RequireServersVar, required)
		ft := &testenv.StopTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sendmailTree(ft)
		}()
		<-done
		if want := required == "1"; ft.DidFail != want || ft.DidSkip == want {
			t.Errorf("%s=%q: failed %v, skipped %v; want failed %v", testenv.RequireServersVar, required, ft.DidFail, ft.DidSkip, want)
		}
		if !strings.Contains(ft.Msg, "./scripts/test.sh") || !strings.Contains(ft.Msg, tree) {
			t.Errorf("message %q names neither ./scripts/test.sh nor %s", ft.Msg, tree)
		}
	}
	if entries, err := os.ReadDir(cache); err != nil || len(entries) != 0 {
		t.Errorf("the cache directory holds %v (%v), want nothing", entries, err)
	}
}

func TestSendmailRelaysToSink(t *testing.T) {
	sink := smtpenv.StartSink(t)
	sm := Start(t, Options{RelayTo: sink.Addr})

	rcpts := []string{"alice@example.org", "bob@example.net"}
	data := smtpenv.NewMessage().
		Add("From", "sender@example.com").
		Add("To", strings.Join(rcpts, ", ")).
		Add("Subject", "Through Sendmail").
		Add("Message-ID", "<infra-sendmail@example.com>").
		SetBody("Hello.\n.leading dot survives\n").
		Bytes()
	reply, err := smtpenv.Send(sm.Addr, "sender@example.com", rcpts, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reply.OK() || !strings.Contains(reply.Text, "Message accepted for delivery") {
		t.Fatalf("want 250 ... Message accepted for delivery at end of data, got %v", reply)
	}
	t.Logf("sendmail accepted: %v", reply)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == "<infra-sendmail@example.com>" })
	if err != nil {
		t.Fatalf("sink: %v\nsendmail log:\n%s", err, sm.Log())
	}
	if got.From != "sender@example.com" {
		t.Errorf("envelope from %q", got.From)
	}
	// Sendmail groups recipients by host and may reorder them.
	if len(got.To) != len(rcpts) || !got.HasRcpt(rcpts[0]) || !got.HasRcpt(rcpts[1]) {
		t.Errorf("envelope rcpts %v, want %v", got.To, rcpts)
	}
	if got.Helo != Hostname {
		t.Errorf("helo %q, want %q", got.Helo, Hostname)
	}
	if !strings.Contains(got.Body(), "\r\n.leading dot survives\r\n") {
		t.Errorf("body %q", got.Body())
	}
	if rcvd := got.Header("Received"); !strings.Contains(rcvd, Hostname) || !strings.Contains(rcvd, "(8.17.") {
		t.Errorf("Received %q", rcvd)
	}

	// Nothing of the system's Sendmail paths is configured or used.
	cf, err := os.ReadFile(sm.CF)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(cf), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, sys := range []string{"/etc/mail", "/var/spool", "/var/lib/sendmail", "/var/run"} {
			if strings.Contains(line, sys) {
				t.Errorf("sendmail.cf uses %s: %s", sys, line)
			}
		}
	}
	// The sink has the message before Sendmail reads its 250 and logs it.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(sm.Log(), "stat=Sent") {
		if time.Now().After(deadline) {
			t.Fatalf("log shows no delivery:\n%s", sm.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	log := sm.Log()
	for _, sys := range []string{"/etc/mail", "/var/spool"} {
		if strings.Contains(log, sys) {
			t.Errorf("sendmail log mentions %s:\n%s", sys, log)
		}
	}
}
