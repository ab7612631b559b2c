package testenv

import (
	"strings"
	"testing"
)

// TestPostfixSASL: a Postfix with SASL takes AUTH PLAIN over plain text
// for a login in its sasldb, logs it as typed (what it passes to milters
// in {auth_authen}), refuses a wrong password with 535, and still takes
// mail without AUTH from 127.0.0.1.
func TestPostfixSASL(t *testing.T) {
	sink := StartSink(t)
	pf := StartPostfix(t, PostfixOptions{RelayTo: sink.Addr, SASL: map[string]string{"jdoe": "s3cret pass", "other": "x"}})
	msg := NewMessage().Add("From", "jdoe@example.org").Add("Subject", "sasl").SetBody("hi\n").Bytes()

	r, err := SendAuth(pf.Addr, "jdoe", "s3cret pass", "someone@example.net", []string{"a@example.org"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("AUTH as jdoe: %v, want 250\n%s", r, pf.Log())
	}
	qid := QueuedAs(r)
	if want := qid + ": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=jdoe"; !strings.Contains(pf.Log(), want) {
		t.Errorf("postfix log has no %q:\n%s", want, pf.Log())
	}

	r, err = SendAuth(pf.Addr, "jdoe", "wrong", "someone@example.net", []string{"a@example.org"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stage != "auth" || r.Code != 535 {
		t.Errorf("AUTH with a wrong password: %v, want auth: 535", r)
	}

	r, err = Send(pf.Addr, "someone@example.net", []string{"a@example.org"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Errorf("without AUTH: %v, want 250", r)
	}
}
