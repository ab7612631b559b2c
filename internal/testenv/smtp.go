package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
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
		t.Fatalf("testenv: sink: listen: %v", err)
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
			return got, fmt.Errorf("testenv: sink: %d of %d matching messages: %w", len(got), n, ctx.Err())
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

// Reply is the answer an SMTP server gave at one stage of a transaction.
type Reply struct {
	// Stage is where the answer came: "helo" (the banner or the answer
	// to EHLO), "auth" (SendAuth's login), "mail", "rcpt", "data" (the answer to DATA itself) or
	// "end" (the answer after the final dot).
	Stage string
	Code  int    // three-digit reply code
	Text  string // the reply text without codes; lines of a multi-line reply joined by "\n"
	// Rcpt is the recipient a "rcpt" reply answered.
	Rcpt string
}

// OK reports whether the message was accepted: 250 after the final dot.
func (r Reply) OK() bool {
	return r.Stage == "end" && r.Code == 250
}

// Temporary reports a 4xx reply, Permanent a 5xx one.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

func (r Reply) String() string {
	s := fmt.Sprintf("%s: %d %s", r.Stage, r.Code, strings.ReplaceAll(r.Text, "\n", " / "))
	if r.Rcpt != "" {
		s += " (rcpt " + r.Rcpt + ")"
	}
	return s
}

// sendTimeout bounds each command's reply in Send, the one after the final
// dot included.
const sendTimeout = 2 * time.Minute

// Send delivers one message over a new SMTP connection to addr with
// go-smtp's client: EHLO client.stormguard.test, MAIL FROM, RCPT TO for each
// recipient, DATA, the message, the final dot, QUIT. from "" sends the
// null sender. Addresses go without <>.
//
// It returns the first answer that is not 2xx/3xx, with the stage it came
// at, or else the answer to the final dot (OK() true on 250). The error is
// only for connection and protocol failures, never for a rejection.
func Send(addr, from string, rcpts []string, data []byte) (Reply, error) {
	return send(addr, nil, from, rcpts, data)
}

// SendAuth is Send after AUTH PLAIN as login with password (over plain
// text: the test MTAs offer it without TLS). A refused login is a Reply at
// stage "auth".
func SendAuth(addr, login, password, from string, rcpts []string, data []byte) (Reply, error) {
	return send(addr, sasl.NewPlainClient("", login, password), from, rcpts, data)
}

// send is Send, authenticating with auth first when it is not nil.
func send(addr string, auth sasl.Client, from string, rcpts []string, data []byte) (Reply, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return Reply{}, fmt.Errorf("testenv: send: %w", err)
	}
	c := smtp.NewClient(nc)
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = sendTimeout, sendTimeout
	// refused makes the server's refusal at stage a Reply; any other error
	// is a failure to talk.
	refused := func(stage, rcpt string, err error) (Reply, error) {
		var e *smtp.SMTPError
		if !errors.As(err, &e) {
			return Reply{}, fmt.Errorf("testenv: send: %s: %w", stage, err)
		}
		_ = c.Quit()
		return Reply{Stage: stage, Code: e.Code, Text: replyText(e), Rcpt: rcpt}, nil
	}
	if err := c.Hello("client.stormguard.test"); err != nil {
		return refused("helo", "", err)
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return refused("auth", "", err)
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return refused("mail", "", err)
	}
	for _, rcpt := range rcpts {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return refused("rcpt", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return refused("data", "", err)
	}
	if _, err := w.Write(data); err != nil {
		return Reply{}, fmt.Errorf("testenv: send: data: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return refused("end", "", err)
	}
	_ = c.Quit()
	return Reply{Stage: "end", Code: 250, Text: resp.StatusText}, nil
}

// replyText is the reply text as the server sent it: go-smtp takes the
// enhanced status code off every line of a refusal; this puts it back.
func replyText(e *smtp.SMTPError) string {
	if e.EnhancedCode == smtp.EnhancedCodeNotSet {
		return e.Message
	}
	code := fmt.Sprintf("%d.%d.%d ", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
	return code + strings.ReplaceAll(e.Message, "\n", "\n"+code)
}

// HeaderField is one header of a Message.
type HeaderField struct {
	Name, Value string
}

// Message builds a test message: headers in the order added, then the body.
//
//	data := testenv.NewMessage().
//		Add("From", "a@example.org").
//		Add("Subject", "Re: lunch").
//		SetBody("see you\n").
//		Bytes()
type Message struct {
	Headers []HeaderField
	Body    string
}

// NewMessage returns an empty message.
func NewMessage() *Message { return &Message{} }

// Add appends a header. A value may hold "\n" followed by whitespace to fold.
func (m *Message) Add(name, value string) *Message {
	m.Headers = append(m.Headers, HeaderField{name, value})
	return m
}

// SetBody sets the body.
func (m *Message) SetBody(body string) *Message {
	m.Body = body
	return m
}

// Bytes renders the message with CRLF line ends (bare LF and CRLF in values
// and body both become CRLF) and a body ending in CRLF.
func (m *Message) Bytes() []byte {
	var b strings.Builder
	for _, h := range m.Headers {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\n")
	}
	b.WriteString("\n")
	b.WriteString(m.Body)
	s := strings.ReplaceAll(b.String(), "\r\n", "\n")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}
