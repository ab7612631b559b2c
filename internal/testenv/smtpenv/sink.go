// Package smtpenv is SMTP for tests: a sink (go-smtp's server) that keeps
// every message it is sent, Send and SendAuth (go-smtp's client), which
// report the answer and the stage it came at, and a builder for test
// messages. It needs nothing installed and starts no external program;
// the sink listens on a free 127.0.0.1 port and stops when the test ends.
package smtpenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkHostname is the name the sink greets with. It must differ from the
// myhostname of the MTA in front of it, or that MTA reports a mail loop.
const SinkHostname = "sink.stormguard.test"

// SinkMessage is one message the sink accepted.
type SinkMessage struct {
	Helo     string    // the EHLO/HELO argument of the session
	From     string    // envelope sender, without <>; "" for the null sender
	To       []string  // envelope recipients, without <>, in RCPT order
	Data     []byte    // the message as received, CRLF line ends, dot-unstuffed
	Received time.Time // when the final dot arrived
}

// Header returns the first value of the named header of the message, ""
// when it has none or the message does not parse. Folded values are
// unfolded; encoded words are left as they are.
func (m SinkMessage) Header(name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	return msg.Header.Get(name)
}

// Headers returns all values of the named header, in order.
func (m SinkMessage) Headers(name string) []string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil
	}
	return msg.Header[textproto.CanonicalMIMEHeaderKey(name)]
}

// Body returns the message body (after the empty line), "" if it does not
// parse.
func (m SinkMessage) Body() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(msg.Body)
	return string(b)
}

// HasRcpt reports whether rcpt (compared without case) is an envelope
// recipient of the message.
func (m SinkMessage) HasRcpt(rcpt string) bool {
	for _, r := range m.To {
		if strings.EqualFold(r, rcpt) {
			return true
		}
	}
	return false
}

// Sink is an SMTP server (go-smtp's) that accepts every message with 250
// and keeps it.
type Sink struct {
	Addr string // host:port it listens on (127.0.0.1)

	srv    *smtp.Server
	ln     net.Listener
	served chan struct{} // closed when the server has stopped accepting
	mu     sync.Mutex
	msgs   []SinkMessage
	// changed is closed and replaced each time a message arrives, waking
	// every Wait.
	changed chan struct{}
	closed  bool
}

// StartSink starts a sink on a free 127.0.0.1 port; it stops when the test
// ends.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtpenv: sink: listen: %v", err)
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln, served: make(chan struct{}), changed: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s, conn: c}, nil
	}))
	s.srv.Domain = SinkHostname
	s.srv.ReadTimeout, s.srv.WriteTimeout = 5*time.Minute, 5*time.Minute
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(s.Close)
	return s
}

// Close stops the sink and drops open sessions; nothing is added after it
// returns. Messages stay readable.
func (s *Sink) Close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if !closed {
		_ = s.srv.Close()
		// go-smtp closes only the listeners Serve has registered: one
		// that has not started yet would accept forever.
		_ = s.ln.Close()
		<-s.served
	}
}

// Messages returns a copy of the messages received so far, in order.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.msgs...)
}

// Len is the number of messages received so far.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Wait returns the first message (received before or during the call) for
// which match returns true; a nil match takes any message. It returns the
// context's error when the context ends first.
func (s *Sink) Wait(ctx context.Context, match func(SinkMessage) bool) (SinkMessage, error) {
	got, err := s.WaitN(ctx, 1, match)
	if err != nil {
		return SinkMessage{}, err
	}
	return got[0], nil
}

// WaitN waits until at least n messages match (nil matches any) and returns
// them in arrival order.
func (s *Sink) WaitN(ctx context.Context, n int, match func(SinkMessage) bool) ([]SinkMessage, error) {
	for {
		s.mu.Lock()
		var got []SinkMessage
		for _, m := range s.msgs {
			if match == nil || match(m) {
				got = append(got, m)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("smtpenv: sink: %d of %d matching messages: %w", len(got), n, ctx.Err())
		}
	}
}

// sinkSession is one SMTP session on the sink: the envelope of the
// transaction under way.
type sinkSession struct {
	sink *Sink
	conn *smtp.Conn
	from string
	to   []string
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := SinkMessage{Helo: ss.conn.Hostname(), From: ss.from, To: ss.to, Data: data, Received: time.Now()}
	s := ss.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.msgs = append(s.msgs, m)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
