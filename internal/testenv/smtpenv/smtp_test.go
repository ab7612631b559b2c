package smtpenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
	if !reply.OK() || reply.Text != "2.0.0 OK: queued" {
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

// refuser is a go-smtp session that refuses where its envelope says: MAIL
// FROM:<mail@refuse.test> at mail, RCPT TO:<rcpt@refuse.test> at rcpt, and
// a message from end@refuse.test after the final dot.
type refuser struct{ from string }

func (r *refuser) Mail(from string, _ *smtp.MailOptions) error {
	r.from = from
	if from == "mail@refuse.test" {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "try again later"}
	}
	return nil
}

func (r *refuser) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == "rcpt@refuse.test" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}

func (r *refuser) Data(rd io.Reader) error {
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return err
	}
	if r.from == "end@refuse.test" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "too many replies (thread x)"}
	}
	return nil
}

func (r *refuser) Reset()        {}
func (r *refuser) Logout() error { return nil }

// TestSinkCloseAtOnce: a sink closed right after it started (a test that
// fails at once) stops, even before its server goroutine has begun
// accepting.
func TestSinkCloseAtOnce(t *testing.T) {
	for i := range 200 {
		s := StartSink(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Close()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("sink %d: Close did not return", i)
		}
	}
}

// serve runs a go-smtp server with the given backend until the test ends.
func serve(t *testing.T, be smtp.BackendFunc) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.Domain = "refuser.stormguard.test"
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestSendReportsStage(t *testing.T) {
	sink := StartSink(t)
	refuse := serve(t, func(*smtp.Conn) (smtp.Session, error) { return &refuser{}, nil })
	greetNo := serve(t, func(*smtp.Conn) (smtp.Session, error) {
		return nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "go away"}
	})
	data := []byte("Subject: x\r\n\r\nx\r\n")
	for _, tc := range []struct {
		name, addr, from string
		rcpts            []string
		want             Reply
	}{
		{"helo", greetNo, "a@example.org", []string{"b@example.org"}, Reply{Stage: "helo", Code: 554, Text: "5.7.0 go away"}},
		{"mail", refuse, "mail@refuse.test", []string{"b@example.org"}, Reply{Stage: "mail", Code: 451, Text: "4.3.2 try again later"}},
		{"rcpt", refuse, "a@example.org", []string{"b@example.org", "rcpt@refuse.test"},
			Reply{Stage: "rcpt", Code: 550, Text: "5.1.1 no such user", Rcpt: "rcpt@refuse.test"}},
		// The sink refuses DATA without recipients.
		{"data", sink.Addr, "a@example.org", nil, Reply{Stage: "data", Code: 502, Text: "5.5.1 Missing RCPT TO command."}},
		{"end", refuse, "end@refuse.test", []string{"b@example.org"}, Reply{Stage: "end", Code: 550, Text: "5.7.1 too many replies (thread x)"}},
		{"accepted", refuse, "a@example.org", []string{"b@example.org"}, Reply{Stage: "end", Code: 250, Text: "2.0.0 OK: queued"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Send(tc.addr, tc.from, tc.rcpts, data)
			if err != nil {
				t.Fatal(err)
			}
			if r != tc.want {
				t.Errorf("got %+v, want %+v", r, tc.want)
			}
			if r.OK() != (r.Code == 250) || r.Permanent() != (r.Code >= 500) || r.Temporary() != (r.Code/100 == 4) {
				t.Errorf("%v: OK %v, Permanent %v, Temporary %v", r, r.OK(), r.Permanent(), r.Temporary())
			}
		})
	}
	r := Reply{Stage: "rcpt", Code: 550, Text: "5.1.1 no\nsuch user", Rcpt: "x@example.org"}
	if got := r.String(); got != "rcpt: 550 5.1.1 no / such user (rcpt x@example.org)" {
		t.Errorf("String() = %q", got)
	}
	// Nothing listening: an error, not a reply.
	sink.Close()
	if _, err := Send(sink.Addr, "a@example.org", []string{"b@example.org"}, data); err == nil {
		t.Error("send to a closed sink succeeded")
	}
	if sink.Len() != 0 {
		t.Errorf("sink kept %d messages", sink.Len())
	}
}
