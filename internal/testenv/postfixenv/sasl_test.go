package postfixenv

import (
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// TestPostfixSASL: a Postfix with SASL has a submission service that
// takes AUTH PLAIN over plain text for a login in its sasldb, logs the
// login as typed (what Postfix passes to milters in {auth_authen}),
// refuses a wrong password with 535 and a client without AUTH; its main
// port offers no AUTH and takes mail from 127.0.0.1 as before.
func TestPostfixSASL(t *testing.T) {
	sink := smtpenv.StartSink(t)
	pf := Start(t, Options{RelayTo: sink.Addr, SASL: map[string]string{"jdoe": "s3cret pass", "other": "x"}})
	if pf.SubmissionAddr == "" || pf.SubmissionAddr == pf.Addr {
		t.Fatalf("SubmissionAddr %q (main port %s)", pf.SubmissionAddr, pf.Addr)
	}
	msg := smtpenv.NewMessage().Add("From", "jdoe@example.org").Add("Subject", "sasl").SetBody("hi\n").Bytes()
	rcpts := []string{"a@example.org"}

	r, err := smtpenv.SendAuth(pf.SubmissionAddr, "jdoe", "s3cret pass", "someone@example.net", rcpts, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("submission, AUTH as jdoe: %v, want 250\n%s", r, pf.Log())
	}
	// postlogd writes the log asynchronously: poll with a deadline.
	want := smtpenv.QueuedAs(r) + ": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=jdoe"
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(pf.Log(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("postfix log has no %q:\n%s", want, pf.Log())
		}
	}

	r, err = smtpenv.SendAuth(pf.SubmissionAddr, "jdoe", "wrong", "someone@example.net", rcpts, msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stage != "auth" || r.Code != 535 {
		t.Errorf("submission, wrong password: %v, want auth: 535", r)
	}
	if r, err = smtpenv.Send(pf.SubmissionAddr, "someone@example.net", rcpts, msg); err != nil || r.Stage != "rcpt" || !r.Permanent() {
		t.Errorf("submission without AUTH: %v, %v; want a 5xx at rcpt", r, err)
	}

	if r, err = smtpenv.SendAuth(pf.Addr, "jdoe", "s3cret pass", "someone@example.net", rcpts, msg); err != nil || r.Stage != "auth" || !r.Permanent() {
		t.Errorf("main port, AUTH: %v, %v; want a 5xx at auth (not offered)", r, err)
	}
	if r, err = smtpenv.Send(pf.Addr, "someone@example.net", rcpts, msg); err != nil || !r.OK() {
		t.Errorf("main port without AUTH: %v, %v; want 250", r, err)
	}
}
