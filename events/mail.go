package events

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// MailConfig is the mail outlet: a short plain-text notice, through the
// local MTA, to the admins when a thread becomes a storm (and, with
// GateHolds, when the sender gate holds a message). Empty To: no outlet.
type MailConfig struct {
	// To are the admins' addresses.
	To []string
	// From is the notices' From and envelope sender; "": stormguard@ the
	// host name.
	From string
	// SMTP is the HOST:PORT of the MTA the notices are handed to.
	SMTP string
	// Timeout bounds one SMTP transaction, from connect to QUIT; a failed
	// one is tried twice more, after 1s and 2s.
	Timeout time.Duration
	// MaxPerHour is how many storm notices this node sends in any hour at
	// most; the rest are dropped, counted and logged.
	MaxPerHour int
	// GateHoldsPerHour is the same for gate-hold notices, a budget of its
	// own: held posts never use up the storm notices'.
	GateHoldsPerHour int
	// OncePer is how long a thread gets no second storm notice (from any
	// node, when Claim is set).
	OncePer time.Duration
	// OriginalSender adds the thread's original sender to the recipients
	// of its storm notice.
	OriginalSender bool
	// GateHolds also mails a notice for each message the sender gate held.
	GateHolds bool
	// ReportURL, if set, is the report page named in the notice.
	ReportURL string
	// RedisPrefix, set with the Redis store, makes the notice show the
	// redis-cli line that lets the thread through.
	RedisPrefix string
	// Claim, if set, claims the right to mail thread's storm notice for
	// ttl across the site (Redis SET NX PX): false means another node
	// has it. nil: this node alone decides (the memory store).
	Claim func(ctx context.Context, thread string, ttl time.Duration) (bool, error)
}

// DefaultNotifySMTP is where notices go when nothing is configured.
const DefaultNotifySMTP = "127.0.0.1:25"

// Validate reports the first mail setting that cannot work, naming its key.
func (c MailConfig) Validate() error {
	if len(c.To) == 0 {
		return nil
	}
	for _, a := range c.To {
		if _, err := parseAddr(a); err != nil {
			return fmt.Errorf("notify.to: %q: %v", a, err)
		}
	}
	if c.From != "" {
		if _, err := parseAddr(c.From); err != nil {
			return fmt.Errorf("notify.from: %q: %v", c.From, err)
		}
	}
	if _, port, err := net.SplitHostPort(c.SMTP); err != nil || port == "" {
		return fmt.Errorf("notify.smtp: %q is not HOST:PORT", c.SMTP)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("notify.timeout: must be positive, got %s", c.Timeout)
	}
	if c.MaxPerHour < 1 {
		return fmt.Errorf("notify.max_per_hour: must be at least 1, got %d", c.MaxPerHour)
	}
	if c.GateHolds && c.GateHoldsPerHour < 1 {
		return fmt.Errorf("notify.gate_holds_per_hour: must be at least 1 with notify.gate_holds, got %d", c.GateHoldsPerHour)
	}
	if c.OncePer <= 0 {
		return fmt.Errorf("notify.once_per: must be positive, got %s", c.OncePer)
	}
	return nil
}

// parseAddr accepts one bare address (local@domain) with nothing in it
// that could end an SMTP command or a header line.
func parseAddr(s string) (string, error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '<' || r == '>' }) {
		return "", errors.New("not a bare address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(s, "@") {
		return "", errors.New("not a bare address")
	}
	return s, nil
}

// errSkipped is a mail outlet's "not sent, on purpose" (a duplicate or
// over the hourly limit): neither sent nor failed.
var errSkipped = errors.New("notice skipped")

// mailer sends the notices. Its one worker (the outlet's) is the only
// caller of send, so its state needs its lock only for Stats-free reads
// in tests.
type mailer struct {
	c    MailConfig
	from string
	node string
	log  func(msg string, args ...any)

	mu       sync.Mutex
	notified map[string]time.Time // thread -> when its notice may be sent again
	storms   budget               // storm notices: MaxPerHour
	gates    budget               // gate-hold notices: GateHoldsPerHour

	// dial connects to the MTA; tests leave it as net.Dialer's.
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// mailOutlet mails notices for storms (and gate holds with GateHolds).
func mailOutlet(c MailConfig, node string, warn func(msg string, args ...any)) *outlet {
	m := &mailer{c: c, from: c.From, node: node, log: warn, notified: map[string]time.Time{},
		storms: budget{key: "notify.max_per_hour", max: c.MaxPerHour},
		gates:  budget{key: "notify.gate_holds_per_hour", max: c.GateHoldsPerHour}}
	if m.from == "" {
		m.from = "stormguard@" + hostname()
	}
	d := net.Dialer{Timeout: c.Timeout}
	m.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	o := &outlet{name: "mail", attempts: 1, send: m.send}
	o.accept = func(e Event) bool {
		return e.Type == TypeStorm || (c.GateHolds && e.Type == TypeGateHold)
	}
	o.mail = m
	return o
}

// send mails e's notice unless the thread was notified within OncePer or
// the hourly limit is reached; an SMTP failure is tried 3 times in all.
func (m *mailer) send(ctx context.Context, e Event) error {
	now := time.Now()
	storm := e.Type == TypeStorm
	if storm && m.seen(e.Thread, now) {
		return errSkipped
	}
	b := &m.gates
	if storm {
		b = &m.storms
	}
	if !m.allow(b, now) {
		return fmt.Errorf("%w: %s reached", errLimited, b.key)
	}
	if storm && m.c.Claim != nil {
		cctx, cancel := context.WithTimeout(ctx, m.c.Timeout)
		ok, err := m.c.Claim(cctx, e.Thread, m.c.OncePer)
		cancel()
		switch {
		case err != nil: // a duplicate is better than no notice
			m.log("cannot claim the thread's notice in the store; mailing it anyway", "thread", e.Thread, "err", err)
		case !ok:
			m.mark(e.Thread, now)
			return errSkipped
		}
	}
	if storm {
		m.mark(e.Thread, now)
	}
	m.take(b, now)
	rcpts, msg := m.notice(e, now)
	var err error
	wait := time.Second
	for try := 1; try <= 3; try++ {
		if err = m.deliver(ctx, rcpts, msg); err == nil || ctx.Err() != nil {
			break
		}
		if try < 3 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			wait *= 2
		}
	}
	if err != nil && storm {
		m.unmark(e.Thread) // a later crossing on this node may try again
	}
	return err
}

// errLimited marks a notice dropped by the hourly limit.
var errLimited = fmt.Errorf("%w: over the hourly limit", errSkipped)

func (m *mailer) seen(thread string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.notified[thread]
	return ok && now.Before(until)
}

// mark records thread's notice. The map stays small: a thread gets in only
// by a notice, at most MaxPerHour an hour, and leaves once OncePer ends.
func (m *mailer) mark(thread string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, until := range m.notified {
		if !now.Before(until) {
			delete(m.notified, t)
		}
	}
	m.notified[thread] = now.Add(m.c.OncePer)
}

func (m *mailer) unmark(thread string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.notified, thread)
}

// budget is one kind of notice's hourly limit.
type budget struct {
	key     string      // its config key, named in the log
	max     int         // notices in any hour at most
	sentAt  []time.Time // the last hour's notices, oldest first
	limited bool        // the limit has been logged since it last let a notice through
}

// allow reports whether a notice may go now within b; the first refusal
// since b last let one through is logged.
func (m *mailer) allow(b *budget, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := 0
	for i < len(b.sentAt) && now.Sub(b.sentAt[i]) >= time.Hour {
		i++
	}
	b.sentAt = b.sentAt[i:]
	if len(b.sentAt) < b.max {
		return true
	}
	if !b.limited {
		b.limited = true
		m.log(b.key+" reached: these notices are dropped (counted in stormguard_events_total{outlet=\"mail\",result=\"rate_limited\"}) until the hour's first ones age out",
			"max_per_hour", b.max)
	}
	return false
}

// take counts a notice against b.
func (m *mailer) take(b *budget, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b.sentAt = append(b.sentAt, now)
	b.limited = false
}

// deliver hands one message to the MTA within Timeout, plain SMTP
// without STARTTLS or AUTH (the MTA is the local one).
func (m *mailer) deliver(ctx context.Context, rcpts []string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.c.Timeout)
	defer cancel()
	conn, err := m.dial(ctx, m.c.SMTP)
	if err != nil {
		return err
	}
	defer conn.Close()
	// go-smtp bounds each command by CommandTimeout and the reply to the
	// final dot by SubmissionTimeout; closing the connection when ctx ends
	// bounds the whole transaction, the message's lines too.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	c.CommandTimeout = m.c.Timeout
	c.SubmissionTimeout = m.c.Timeout
	defer c.Close()
	if err := m.transact(c, rcpts, msg); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return err
	}
	return nil
}

// transact is one SMTP transaction on c: EHLO, MAIL, RCPT for each of
// rcpts, DATA and QUIT.
func (m *mailer) transact(c *smtp.Client, rcpts []string, msg []byte) error {
	if err := c.Hello(helloName(m.from)); err != nil {
		return err
	}
	if err := c.Mail(m.from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// helloName is the EHLO name: the From address's domain, which is ours.
func helloName(from string) string {
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i+1 < len(from) {
		return from[i+1:]
	}
	return "localhost"
}

// recipients are the admins and, if configured and usable, the thread's
// original sender.
func (m *mailer) recipients(e Event) []string {
	rcpts := append([]string(nil), m.c.To...)
	if m.c.OriginalSender && e.Type == TypeStorm && e.OriginalSender != "" {
		if a, err := parseAddr(e.OriginalSender); err == nil && !containsFold(rcpts, a) {
			rcpts = append(rcpts, a)
		}
	}
	return rcpts
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// headerText makes text from a message (a subject, an address) one safe
// header value: controls, CR and LF become spaces, at most max characters,
// non-ASCII encoded per RFC 2047.
func headerText(s string, max int) string {
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return mime.QEncoding.Encode("utf-8", s)
}

// bodyText makes text from a message one safe line of the body: controls
// (terminal escapes too) become spaces, at most max characters.
func bodyText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

// notice renders e's message: RFC 5322 headers that mark it as
// automatic (so that no one's auto-reply or reply-all answers it), a
// quoted-printable UTF-8 body.
func (m *mailer) notice(e Event, now time.Time) (rcpts []string, msg []byte) {
	rcpts = m.recipients(e)
	var subject, body string
	switch e.Type {
	case TypeGateHold:
		subject = fmt.Sprintf("stormguard: message to %s held by the sender gate", e.List)
		body = gateHoldBody(e)
	default:
		subject = "stormguard: reply-all storm stopped in thread " + e.Thread
		body = m.stormBody(e)
	}
	if e.Subject != "" {
		subject += ": " + e.Subject
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	var b bytes.Buffer
	h := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	h("Date", now.Format(time.RFC1123Z))
	h("From", "stormguard <"+m.from+">")
	h("To", strings.Join(rcpts, ", "))
	h("Subject", headerText(subject, 200))
	h("Message-ID", "<"+hex.EncodeToString(id)+"."+e.Thread+"@"+helloName(m.from)+">")
	h("Auto-Submitted", "auto-generated")    // RFC 3834: never answered automatically
	h("Precedence", "bulk")                  // what older vacation programs look at
	h("X-Auto-Response-Suppress", "All")     // what Exchange and Outlook look at
	h("X-Stormguard-Notice", string(e.Type)) // for the admins' mail rules
	if e.Thread != "" {
		h("X-Stormguard-Thread", headerText(e.Thread, 64))
	}
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
	_ = qp.Close()
	return rcpts, b.Bytes()
}

func (m *mailer) stormBody(e Event) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("A reply-all storm was stopped: every further reply to everyone in this")
	line("thread is refused (%s) on every node until the block ends.", orDash(e.Action))
	line("")
	line("Thread:       %s", e.Thread)
	if e.Subject != "" {
		line("Subject:      %s", bodyText(e.Subject, 200))
	}
	if e.OriginalSender != "" {
		line("Started by:   %s", bodyText(e.OriginalSender, 200))
	}
	line("Limit:        %s crossed: %d replies to everyone counted, %d deliveries", orDash(e.Rule), e.Count, e.Delivered)
	line("Refused:      the reply by %s to %d mailboxes", bodyText(orDash(e.Sender), 200), e.Audience)
	line("Blocked for:  %s, from %s", orDash(e.BlockFor), e.Time.UTC().Format(time.RFC1123))
	line("Node:         %s", bodyText(e.Node, 100))
	if e.Fallback {
		line("")
		line("Redis was down: only this node knows of the storm.")
	}
	line("")
	line("If this is no storm, let the thread through on every node for 2 hours:")
	line("")
	line("  stormguard allow %s --for 2h", e.Thread)
	if m.c.RedisPrefix != "" {
		line("  redis-cli SET '%s{%s}:override' allow EX 7200", m.c.RedisPrefix, e.Thread)
	}
	line("")
	line("Who replied: stormguard show %s", e.Thread)
	line("Lift the block and count afresh: stormguard reset %s", e.Thread)
	if m.c.ReportURL != "" {
		line("Report page: %s", m.c.ReportURL)
	}
	line("")
	line("-- ")
	line("stormguard on %s. One notice per thread per %s; at most %d storm notices an hour", bodyText(m.node, 100), m.c.OncePer, m.c.MaxPerHour)
	line("from this node (notify.once_per, notify.max_per_hour).")
	return b.String()
}

func gateHoldBody(e Event) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("The sender gate held a message to a guarded audience in the MTA's hold")
	line("queue: its sender is not an allowed poster (gate.posters).")
	line("")
	line("Sender:       %s", bodyText(orDash(e.Sender), 200))
	line("List:         %s (%d mailboxes)", bodyText(orDash(e.List), 200), e.Audience)
	if e.Subject != "" {
		line("Subject:      %s", bodyText(e.Subject, 200))
	}
	line("Queue id:     %s", bodyText(orDash(e.QueueID), 40))
	line("Node:         %s", bodyText(e.Node, 100))
	line("")
	line("To deliver it, on that node: postsuper -H %s (Postfix)", bodyText(orDash(e.QueueID), 40))
	line("or sendmail -qQ -Q -qI%s (Sendmail); to drop it: postsuper -d %s.", bodyText(orDash(e.QueueID), 40), bodyText(orDash(e.QueueID), 40))
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
