// Send and SendAuth: one message over a new SMTP connection, and the
// answer it got.

package smtpenv

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

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
		return Reply{}, fmt.Errorf("smtpenv: send: %w", err)
	}
	c := smtp.NewClient(nc)
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = sendTimeout, sendTimeout
	// refused makes the server's refusal at stage a Reply; any other error
	// is a failure to talk.
	refused := func(stage, rcpt string, err error) (Reply, error) {
		var e *smtp.SMTPError
		if !errors.As(err, &e) {
			return Reply{}, fmt.Errorf("smtpenv: send: %s: %w", stage, err)
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
		return Reply{}, fmt.Errorf("smtpenv: send: data: %w", err)
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

// queuedAs finds the queue id in an MTA's 250 after the final dot:
// Postfix's "2.0.0 Ok: queued as ID", Sendmail's "2.0.0 ID Message
// accepted for delivery".
var queuedAs = regexp.MustCompile(`(?:queued as ([0-9A-Za-z]+))|(?:^2\.0\.0 ([0-9A-Za-z]+) Message accepted)`)

// QueuedAs returns the queue id the MTA gave in its answer to a message,
// or "" if r names none.
func QueuedAs(r Reply) string {
	m := queuedAs.FindStringSubmatch(r.Text)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}

// QueueID returns the queue id in an MTA's answer to a message (QueuedAs),
// or fails the test.
func QueueID(t testing.TB, r Reply) string {
	t.Helper()
	id := QueuedAs(r)
	if !r.OK() || id == "" {
		t.Fatalf("smtpenv: want 250 naming a queue id, got %v", r)
	}
	return id
}
