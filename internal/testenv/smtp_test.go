package testenv

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSinkSend(t *testing.T) {
	sink := StartSink(t)
	data := NewMessage().
		Add("From", "Alice <alice@example.org>").
		Add("To", "bob@example.org,\n carol@example.net").
		Add("Subject", "Re: smoke").
		Add("Received", "first").
		Add("Received", "second").
		SetBody("line one\n.dot line\n..two dots\n.\nlast").
		Bytes()
	if !bytes.Contains(data, []byte("\r\n carol@example.net\r\n")) || bytes.Contains(data, []byte("t\n")) {
		t.Fatalf("Bytes did not make CRLF: %q", data)
	}

	reply, err := Send(sink.Addr, "alice@example.org", []string{"bob@example.org", "carol@example.net"}, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reply.OK() || reply.Text != "2.0.0 Ok: queued" {
		t.Fatalf("reply %v", reply)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := sink.Wait(ctx, func(m SinkMessage) bool { return m.Header("subject") == "Re: smoke" })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, data) {
		t.Errorf("data changed in transit:\n got %q\nwant %q", m.Data, data)
	}
	if m.From != "alice@example.org" || len(m.To) != 2 || !m.HasRcpt("Carol@example.net") {
		t.Errorf("envelope %q -> %q", m.From, m.To)
	}
	if m.Helo != "client.stormguard.test" {
		t.Errorf("helo %q", m.Helo)
	}
	if got := m.Header("To"); got != "bob@example.org, carol@example.net" {
		t.Errorf("unfolded To %q", got)
	}
	if got := m.Headers("Received"); len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Errorf("Received %q", got)
	}
	if got := m.Body(); got != "line one\r\n.dot line\r\n..two dots\r\n.\r\nlast\r\n" {
		t.Errorf("body %q", got)
	}

	// Null sender; Wait with nil match returns the first message.
	if r, err := Send(sink.Addr, "", []string{"x@example.org"}, []byte("Subject: bounce\r\n\r\nx\r\n")); err != nil || !r.OK() {
		t.Fatalf("null sender: %v %v", r, err)
	}
	all, err := sink.WaitN(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if all[1].From != "" || all[1].Header("Subject") != "bounce" {
		t.Errorf("second message %+v", all[1])
	}
	if first, _ := sink.Wait(ctx, nil); first.Header("Subject") != "Re: smoke" {
		t.Errorf("Wait(nil) returned %q", first.Header("Subject"))
	}
}

func TestSinkWaitBlocksUntilArrival(t *testing.T) {
	sink := StartSink(t)
	got := make(chan SinkMessage, 1)
	errc := make(chan error, 1)
	go func() {
		m, err := sink.Wait(context.Background(), func(m SinkMessage) bool { return m.HasRcpt("late@example.org") })
		if err != nil {
			errc <- err
			return
		}
		got <- m
	}()
	// Other traffic first: it must not satisfy the waiter.
	for _, rcpt := range []string{"early@example.org", "late@example.org"} {
		if r, err := Send(sink.Addr, "a@example.org", []string{rcpt}, []byte("Subject: "+rcpt+"\r\n\r\nx\r\n")); err != nil || !r.OK() {
			t.Fatalf("%s: %v %v", rcpt, r, err)
		}
	}
	select {
	case m := <-got:
		if m.Header("Subject") != "late@example.org" {
			t.Errorf("woke for %q", m.Header("Subject"))
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := sink.Wait(ctx, func(m SinkMessage) bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait without match: %v", err)
	}
}

func TestSendReportsStage(t *testing.T) {
	sink := StartSink(t)
	// The sink refuses DATA without recipients: 503 at data.
	r, err := Send(sink.Addr, "a@example.org", nil, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Stage != "data" || r.Code != 503 || !r.Permanent() || r.OK() {
		t.Errorf("got %v, want 503 at data", r)
	}
	// Bad recipient syntax: 501 at rcpt, naming the recipient.
	r, err = Send(sink.Addr, "a@example.org", []string{"ok@example.org", ""}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Stage != "rcpt" || r.Code != 501 || r.Rcpt != "" {
		t.Errorf("got %v, want 501 at rcpt", r)
	}
	if !strings.Contains(r.String(), "rcpt: 501") {
		t.Errorf("String() = %q", r.String())
	}
	// Nothing listening: an error, not a reply.
	sink.Close()
	if _, err := Send(sink.Addr, "a@example.org", []string{"b@example.org"}, []byte("x\r\n")); err == nil {
		t.Error("send to a closed sink succeeded")
	}
	if sink.Len() != 0 {
		t.Errorf("sink kept %d messages", sink.Len())
	}
}
