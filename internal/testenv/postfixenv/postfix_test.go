package postfixenv

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

func TestPostfixRelaysToSink(t *testing.T) {
	sink := smtpenv.StartSink(t)
	pf := Start(t, Options{RelayTo: sink.Addr})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for i, tc := range []struct {
		subject string
		rcpts   []string
	}{
		{"Quarterly numbers", []string{"alice@example.org", "bob@example.org"}},
		{"Second domain", []string{"carol@example.net"}},
	} {
		data := smtpenv.NewMessage().
			Add("From", "sender@example.com").
			Add("To", strings.Join(tc.rcpts, ", ")).
			Add("Subject", tc.subject).
			Add("Message-ID", "<infra-"+strconv.Itoa(i)+"@example.com>").
			SetBody("Hello.\n.leading dot survives\n").
			Bytes()
		reply, err := smtpenv.Send(pf.Addr, "sender@example.com", tc.rcpts, data)
		if err != nil {
			t.Fatalf("send %q: %v", tc.subject, err)
		}
		if !reply.OK() {
			t.Fatalf("send %q: want 250 at end of data, got %v", tc.subject, reply)
		}
		if !strings.HasPrefix(reply.Text, "2.0.0 Ok: queued as ") {
			t.Errorf("send %q: end reply text %q", tc.subject, reply.Text)
		}

		got, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Subject") == tc.subject })
		if err != nil {
			t.Fatalf("sink: %v\npostfix log:\n%s", err, pf.Log())
		}
		if got.From != "sender@example.com" {
			t.Errorf("%q: envelope from %q", tc.subject, got.From)
		}
		if strings.Join(got.To, ",") != strings.Join(tc.rcpts, ",") {
			t.Errorf("%q: envelope rcpts %v, want %v", tc.subject, got.To, tc.rcpts)
		}
		if got.Helo != Hostname {
			t.Errorf("%q: helo %q", tc.subject, got.Helo)
		}
		if !strings.Contains(got.Body(), "\r\n.leading dot survives\r\n") {
			t.Errorf("%q: body %q", tc.subject, got.Body())
		}
		// Postfix adds its Received header on top.
		if rcvd := got.Header("Received"); !strings.Contains(rcvd, Hostname) {
			t.Errorf("%q: Received %q", tc.subject, rcvd)
		}
	}
	if n := sink.Len(); n != 2 {
		t.Errorf("sink has %d messages, want 2", n)
	}
	if log := pf.Log(); !strings.Contains(log, "status=sent") {
		t.Errorf("maillog shows no delivery:\n%s", log)
	}
}

// A milter that cannot be reached gets milter_default_action: tempfail
// answers every transaction with 451 at MAIL FROM; accept lets it through.
func TestPostfixMilterDefaultAction(t *testing.T) {
	sink := smtpenv.StartSink(t)
	dead := "inet:127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) // nothing listens there
	data := smtpenv.NewMessage().Add("From", "a@example.com").Add("Subject", "milter down").SetBody("x\n").Bytes()

	t.Run("tempfail", func(t *testing.T) {
		pf := Start(t, Options{RelayTo: sink.Addr, Milter: dead})
		reply, err := smtpenv.Send(pf.Addr, "a@example.com", []string{"b@example.org"}, data)
		if err != nil {
			t.Fatal(err)
		}
		if reply.Stage != "mail" || reply.Code != 451 || !strings.HasPrefix(reply.Text, "4.7.1 ") {
			t.Errorf("got %v, want 451 4.7.1 at mail", reply)
		}
		t.Logf("milter down, tempfail: %v", reply)
	})
	t.Run("accept", func(t *testing.T) {
		pf := Start(t, Options{RelayTo: sink.Addr, Milter: dead, DefaultAction: "accept"})
		reply, err := smtpenv.Send(pf.Addr, "a@example.com", []string{"b@example.org"}, data)
		if err != nil {
			t.Fatal(err)
		}
		if !reply.OK() {
			t.Fatalf("got %v, want 250 at end", reply)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.HasRcpt("b@example.org") }); err != nil {
			t.Fatalf("sink: %v\n%s", err, pf.Log())
		}
	})
}

func TestPostfixSetMainReload(t *testing.T) {
	pf := Start(t, Options{}) // no relay: discard
	data := smtpenv.NewMessage().Add("From", "a@example.com").Add("Subject", "x").SetBody("x\n").Bytes()
	if r, err := smtpenv.Send(pf.Addr, "a@example.com", []string{"b@example.org"}, data); err != nil || !r.OK() {
		t.Fatalf("before: %v %v", r, err)
	}
	pf.SetMain("smtpd_relay_restrictions", "reject")
	if got := pf.Main("smtpd_relay_restrictions"); got != "reject" {
		t.Fatalf("postconf -h: %q", got)
	}
	pf.Reload()
	r, err := smtpenv.Send(pf.Addr, "a@example.com", []string{"b@example.org"}, data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stage != "rcpt" || r.Code != 554 || r.Rcpt != "b@example.org" {
		t.Fatalf("after reload: got %v, want 554 at rcpt", r)
	}
}
