package testenv

import (
	"bufio"
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
)

// SinkHostname is the name the sink greets with. It must differ from the
// myhostname of the Postfix in front of it, or Postfix reports a mail loop.
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

// Sink is an SMTP server that accepts every message with 250 and keeps it.
// It speaks enough ESMTP for Postfix's smtp client and for Send.
type Sink struct {
	Addr string // host:port it listens on (127.0.0.1)

	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	msgs []SinkMessage
	// changed is closed and replaced each time a message arrives, waking
	// every Wait.
	changed chan struct{}
	conns   map[net.Conn]struct{}
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
	s := &Sink{
		Addr:    ln.Addr().String(),
		ln:      ln,
		changed: make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Port is the TCP port the sink listens on.
func (s *Sink) Port() int {
	return s.ln.Addr().(*net.TCPAddr).Port
}

// Close stops the sink and drops open sessions. Messages stay readable.
func (s *Sink) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
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
	seen := 0
	for {
		s.mu.Lock()
		for ; seen < len(s.msgs); seen++ {
			if match == nil || match(s.msgs[seen]) {
				m := s.msgs[seen]
				s.mu.Unlock()
				return m, nil
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return SinkMessage{}, fmt.Errorf("testenv: sink: no matching message among %d received: %w", seen, ctx.Err())
		}
	}
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

func (s *Sink) add(m SinkMessage) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.session(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// maxLine bounds one command or data line, so a broken client cannot make
// the sink buffer without end.
const maxLine = 1 << 20

func (s *Sink) session(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	// reply queues an answer; the loop flushes once the client has nothing
	// more queued, as a pipelining server does.
	reply := func(lines ...string) {
		for _, l := range lines {
			w.WriteString(l)
			w.WriteString("\r\n")
		}
	}
	deadline := func() { _ = c.SetDeadline(time.Now().Add(5 * time.Minute)) }

	var (
		helo    string
		from    string
		hasMail bool
		rcpts   []string
	)
	reset := func() { from, hasMail, rcpts = "", false, nil }

	deadline()
	reply("220 " + SinkHostname + " ESMTP testenv sink")
	if w.Flush() != nil {
		return
	}
	for {
		deadline()
		line, err := readLine(r)
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			helo = strings.TrimSpace(arg)
			reset()
			reply("250-"+SinkHostname, "250-PIPELINING", "250 8BITMIME")
		case "HELO":
			helo = strings.TrimSpace(arg)
			reset()
			reply("250 " + SinkHostname)
		case "MAIL":
			addr, ok := pathArg(arg, "FROM:")
			switch {
			case !ok:
				reply("501 5.5.4 Syntax: MAIL FROM:<address>")
			case hasMail:
				reply("503 5.5.1 Error: nested MAIL command")
			default:
				from, hasMail, rcpts = addr, true, nil
				reply("250 2.1.0 Ok")
			}
		case "RCPT":
			addr, ok := pathArg(arg, "TO:")
			switch {
			case !hasMail:
				reply("503 5.5.1 Error: need MAIL command")
			case !ok || addr == "":
				reply("501 5.5.4 Syntax: RCPT TO:<address>")
			default:
				rcpts = append(rcpts, addr)
				reply("250 2.1.5 Ok")
			}
		case "DATA":
			if len(rcpts) == 0 {
				reply("503 5.5.1 Error: need RCPT command")
				break
			}
			reply("354 End data with <CR><LF>.<CR><LF>")
			if w.Flush() != nil {
				return
			}
			data, err := readData(r)
			if err != nil {
				return
			}
			s.add(SinkMessage{Helo: helo, From: from, To: rcpts, Data: data, Received: time.Now()})
			reset()
			reply("250 2.0.0 Ok: queued")
		case "RSET":
			reset()
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "VRFY":
			reply("252 2.0.0 Cannot VRFY user")
		case "QUIT":
			reply("221 2.0.0 Bye")
			_ = w.Flush()
			return
		default:
			reply("502 5.5.2 Error: command not recognized")
		}
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// readLine reads one CRLF (or LF) terminated line without its line end.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
		if len(b) > maxLine {
			return "", errors.New("line too long")
		}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// readData reads a DATA section up to the lone dot, removes dot-stuffing and
// keeps line ends as sent.
func readData(r *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for {
		var line []byte
		for {
			chunk, err := r.ReadSlice('\n')
			line = append(line, chunk...)
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
			if len(line) > maxLine {
				return nil, errors.New("line too long")
			}
		}
		if string(line) == ".\r\n" || string(line) == ".\n" {
			return buf.Bytes(), nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		buf.Write(line)
	}
}

// pathArg parses "FROM:<addr> PARAMS" (prefix "FROM:") into addr.
func pathArg(arg, prefix string) (string, bool) {
	arg = strings.TrimSpace(arg)
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	arg = strings.TrimSpace(arg[len(prefix):])
	if strings.HasPrefix(arg, "<") {
		end := strings.IndexByte(arg, '>')
		if end < 0 {
			return "", false
		}
		return arg[1:end], true
	}
	addr, _, _ := strings.Cut(arg, " ")
	return addr, addr != ""
}

// Reply is the answer an SMTP server gave at one stage of a transaction.
type Reply struct {
	// Stage is where the answer came: "connect" (banner), "helo", "mail",
	// "rcpt", "data" (the answer to DATA itself) or "end" (the answer
	// after the final dot).
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

// SendTimeout bounds one whole Send.
var SendTimeout = 2 * time.Minute

// Send delivers one message over a new SMTP connection to addr: EHLO, MAIL
// FROM, RCPT TO for each recipient, DATA, the message, the final dot, QUIT.
// from "" sends the null sender. Addresses go without <>.
//
// It returns the first answer that is not 2xx/3xx, with the stage it came
// at, or else the answer to the final dot (OK() true on 250). The error is
// only for connection and protocol failures, never for a rejection.
func Send(addr, from string, rcpts []string, data []byte) (Reply, error) {
	return SendHelo(addr, "client.stormguard.test", from, rcpts, data)
}

// SendHelo is Send with the given EHLO name.
func SendHelo(addr, helo, from string, rcpts []string, data []byte) (Reply, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return Reply{}, fmt.Errorf("testenv: send: %w", err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(SendTimeout))
	c := textproto.NewConn(nc)

	read := func(stage string) (Reply, bool, error) {
		code, text, err := c.ReadResponse(0)
		if err != nil {
			return Reply{}, false, fmt.Errorf("testenv: send: %s: %w", stage, err)
		}
		r := Reply{Stage: stage, Code: code, Text: text}
		return r, code >= 200 && code < 400, nil
	}
	cmd := func(stage, format string, args ...any) (Reply, bool, error) {
		if err := c.PrintfLine(format, args...); err != nil {
			return Reply{}, false, fmt.Errorf("testenv: send: %s: %w", stage, err)
		}
		return read(stage)
	}
	quit := func() {
		if c.PrintfLine("QUIT") == nil {
			_, _, _ = c.ReadResponse(0)
		}
	}

	if r, ok, err := read("connect"); err != nil || !ok {
		if err == nil {
			quit()
		}
		return r, err
	}
	if r, ok, err := cmd("helo", "EHLO %s", helo); err != nil || !ok {
		if err == nil {
			quit()
		}
		return r, err
	}
	if r, ok, err := cmd("mail", "MAIL FROM:<%s>", from); err != nil || !ok {
		if err == nil {
			quit()
		}
		return r, err
	}
	for _, rcpt := range rcpts {
		r, ok, err := cmd("rcpt", "RCPT TO:<%s>", rcpt)
		r.Rcpt = rcpt
		if err != nil || !ok {
			if err == nil {
				quit()
			}
			return r, err
		}
	}
	if r, ok, err := cmd("data", "DATA"); err != nil || !ok {
		if err == nil {
			quit()
		}
		return r, err
	}
	dw := c.DotWriter()
	if _, err := dw.Write(data); err != nil {
		return Reply{}, fmt.Errorf("testenv: send: data: %w", err)
	}
	if err := dw.Close(); err != nil {
		return Reply{}, fmt.Errorf("testenv: send: data: %w", err)
	}
	r, _, err := read("end")
	if err != nil {
		return r, err
	}
	quit()
	return r, nil
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
