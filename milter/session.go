package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
)

// Bounds on what one message may make the daemon hold.
const (
	maxRcpts       = 100000   // Postfix's smtpd_recipient_limit defaults to 1000
	maxHeaderValue = 64 << 10 // per collected header value
	maxAddrHeaders = 1 << 20  // all To/Cc values together
)

// singleHeaders are the headers policy reads that should appear once, by
// lower-case name; for each, where its value goes.
var singleHeaders = map[string]func(*policy.Headers) *string{
	"message-id":     func(h *policy.Headers) *string { return &h.MessageID },
	"in-reply-to":    func(h *policy.Headers) *string { return &h.InReplyTo },
	"references":     func(h *policy.Headers) *string { return &h.References },
	"thread-index":   func(h *policy.Headers) *string { return &h.ThreadIndex },
	"subject":        func(h *policy.Headers) *string { return &h.Subject },
	"from":           func(h *policy.Headers) *string { return &h.From },
	"auto-submitted": func(h *policy.Headers) *string { return &h.AutoSubmitted },
	"precedence":     func(h *policy.Headers) *string { return &h.Precedence },
	"x-autoreply":    func(h *policy.Headers) *string { return &h.XAutoreply },
	"x-autorespond":  func(h *policy.Headers) *string { return &h.XAutorespond },
	"list-id":        func(h *policy.Headers) *string { return &h.ListID },
	"content-type":   func(h *policy.Headers) *string { return &h.ContentType },
}

// session is one MTA connection. go-milter calls its methods in protocol
// order from one goroutine; several messages may share it.
type session struct {
	gomilter.NoOpMilter
	f *Filter

	msg      Message
	client   netip.Addr // the SMTP client's address (CONNECT); zero when not IP
	addrSize int
	tag      string // X-Stormguard value to add at end of message (monitor)
	header   string // the header tag goes in, as configured when the message was decided
	hold     string // quarantine reason to give at end of message (action hold)
	// unheld is the 451 text sent instead of holding when the MTA did
	// not negotiate the quarantine action.
	unheld string
	// failed is the failure policy's answer to a callback before end of
	// headers that panicked: with NoReplies the MTA reads no answer there,
	// so it is given at end of headers.
	failed *gomilter.Response
}

// reset forgets the current message; the connection stays.
func (s *session) reset() {
	s.msg = Message{}
	s.addrSize = 0
	s.tag, s.header = "", ""
	s.hold = ""
	s.unheld = ""
	s.failed = nil
}

// guard turns a panic in a callback into the failure policy's answer, so one
// bad message never takes the daemon down.
func (s *session) guard(stage string, resp **gomilter.Response, err *error) {
	r := recover()
	if r == nil {
		return
	}
	s.f.Stats.Panics.Add(1)
	s.f.log.Error("recovered panic in milter callback", "stage", stage, "queue_id", s.msg.QueueID,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = nil
	if s.f.conf().OnError == OnErrorTempfail {
		*resp = gomilter.RespTempFail
	} else {
		*resp = gomilter.RespAccept
	}
	s.reset()
	if stage != "eoh" && stage != "eom" {
		s.failed = *resp
	}
}

// Connect notes the SMTP client's address, for TrustedNetworks.
func (s *session) Connect(_ string, _ string, _ uint16, addr string, _ gomilter.Modifier) (*gomilter.Response, error) {
	s.client, _ = netip.ParseAddr(strings.Trim(addr, "[]"))
	s.client = s.client.Unmap()
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, _ string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("mail", &resp, &err)
	s.reset()
	s.msg.Sender = strings.ToLower(strings.TrimSpace(from))
	s.msg.AuthUser = m.Get(gomilter.MacroAuthAuthen)
	s.msg.Trusted = s.msg.AuthUser != "" || trusted(s.f.conf().TrustedNetworks, s.client)
	s.msg.Daemon = m.Get(gomilter.MacroDaemonName)
	return gomilter.RespContinue, nil
}

func (s *session) RcptTo(rcpt string, _ string, _ gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("rcpt", &resp, &err)
	if len(s.msg.Rcpts) < maxRcpts {
		s.msg.Rcpts = append(s.msg.Rcpts, strings.ToLower(strings.TrimSpace(rcpt)))
	}
	// Continue, never Accept: accept would end the milter's part in this message.
	return gomilter.RespContinue, nil
}

func (s *session) Header(name, value string, _ gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("header", &resp, &err)
	if len(value) > maxHeaderValue {
		value = value[:maxHeaderValue]
	}
	h := &s.msg.Headers
	key := strings.ToLower(name)
	if key == "to" || key == "cc" {
		if s.addrSize+len(value) <= maxAddrHeaders {
			s.addrSize += len(value)
			if key == "to" {
				h.To = append(h.To, value)
			} else {
				h.Cc = append(h.Cc, value)
			}
		}
	} else if field := singleHeaders[key]; field != nil {
		if p := field(h); *p == "" { // the first occurrence counts
			*p = value
		}
	}
	return gomilter.RespContinue, nil
}

// reply builds a custom SMTP reply; if the text cannot be sent, the plain
// code is, rather than an error that would drop the milter connection.
func reply(code uint16, text string, plain *gomilter.Response) (*gomilter.Response, error) {
	r, err := gomilter.RejectWithCodeAndReason(code, text)
	if err != nil {
		return plain, nil
	}
	return r, nil
}

// Headers is end of headers: the one place stormguard decides.
func (s *session) Headers(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("eoh", &resp, &err)
	if s.failed != nil {
		return s.failed, nil
	}
	s.msg.QueueID = m.Get(gomilter.MacroQueueId)
	d := s.f.Decide(context.Background(), &s.msg)
	s.logDecision(d)
	c := d.conf // the texts of the configuration it was decided by
	switch {
	case d.Rule == policy.RuleStoreError && d.Action == policy.ActionTempfail:
		return gomilter.RespTempFail, nil // the MTA's own "try again later"
	case d.Rule == policy.RuleGate && d.Action == policy.ActionReject:
		return reply(550, c.gateText(d.Action, d.List), gomilter.RespReject)
	case d.Rule == policy.RuleGate && d.Action == policy.ActionTempfail:
		return reply(451, c.gateText(d.Action, d.List), gomilter.RespTempFail)
	case d.Rule == policy.RuleGate && d.Action == policy.ActionHold:
		// The quarantine action is only allowed at end of message.
		s.hold = GateHoldReason(s.msg.Sender, d.List)
		s.unheld = c.gateText(policy.ActionTempfail, "")
		return gomilter.RespContinue, nil
	case d.Action == policy.ActionHold:
		s.hold = HoldReason(d.Thread, d.Rule)
		s.unheld = c.replyText(policy.ActionTempfail, d.Thread)
		return gomilter.RespContinue, nil
	case d.Action == policy.ActionReject:
		return reply(550, c.replyText(d.Action, d.Thread), gomilter.RespReject)
	case d.Action == policy.ActionTempfail:
		return reply(451, c.replyText(d.Action, d.Thread), gomilter.RespTempFail)
	case d.Action == policy.ActionTag:
		// Headers can only be added at end of message: go on until then.
		s.header = c.Header
		s.tag = fmt.Sprintf("would-refuse; thread=%s; rule=%s; audience=%d; count=%d", d.Thread, d.Rule, d.Audience, d.Count)
		if d.List != "" {
			s.tag += "; list=" + d.List
		}
		return gomilter.RespContinue, nil
	default:
		return gomilter.RespAccept, nil
	}
}

func (s *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("eom", &resp, &err)
	if s.hold != "" {
		hold, unheld, qid := s.hold, s.unheld, s.msg.QueueID
		s.reset()
		if err := m.Quarantine(hold); err != nil {
			// Not negotiated (an MTA without the quarantine action):
			// never let the message through unheld; the sender's MTA
			// retries a tempfail.
			s.f.log.Error("cannot hold message (quarantine refused by the MTA); tempfailing it", "queue_id", qid, "err", err)
			return reply(451, unheld, gomilter.RespTempFail)
		}
		return gomilter.RespAccept, nil
	}
	if s.tag != "" {
		if err := m.AddHeader(s.header, s.tag); err != nil {
			s.f.log.Warn("cannot add monitor header", "queue_id", s.msg.QueueID, "err", err)
		}
	}
	s.reset()
	return gomilter.RespAccept, nil
}

// HoldReason is the quarantine reason of a reply held for a storm: one
// line naming the thread and the rule and how to release it. It holds
// nothing the sender wrote (the thread id is hex, the rule one of
// policy's names), so no header text can reach the MTA's queue file or
// an operator's terminal through it. It names stormguard's command, not
// an MTA's: Sendmail shows the reason (mailq -qQ), Postfix logs only
// "milter triggers HOLD action" and drops it.
func HoldReason(thread policy.ThreadID, rule policy.Rule) string {
	if thread == "" {
		thread = "unknown"
	}
	return fmt.Sprintf("stormguard: reply-all storm in thread %s (%s); release with stormguard queue %s --release",
		thread, rule, thread)
}

// trusted reports whether client is in one of nets.
func trusted(nets []netip.Prefix, client netip.Addr) bool {
	for _, n := range nets {
		if client.IsValid() && n.Contains(client) {
			return true
		}
	}
	return false
}

// GateHoldReason is the quarantine reason of a message the sender gate
// holds: one line naming the envelope sender and the list. The sender is
// whatever the client gave at MAIL FROM, so both are cleaned (text.Clean:
// control and format characters become spaces) and cut short: no ESC,
// BEL or line break reaches the MTA's queue file or mailq -qQ.
func GateHoldReason(sender, list string) string {
	return fmt.Sprintf("stormguard: sender gate: %s may not post to %s", text.Clean(sender, maxReasonField), text.Clean(list, maxReasonField))
}

// maxReasonField is the most runes of one field a reason carries.
const maxReasonField = 200

func (s *session) Abort(_ gomilter.Modifier) error {
	s.reset()
	return nil
}

func (s *session) logDecision(d Decision) {
	level := slog.LevelInfo
	if d.Rule == policy.RuleSmallAudience || d.Rule == policy.RuleModeOff || d.Rule == policy.RuleExempt {
		level = slog.LevelDebug // most mail; one line each at debug level
	}
	if !s.f.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("queue_id", s.msg.QueueID),
		slog.String("thread", string(d.Thread)),
		slog.Int("audience", d.Audience),
		slog.Int("count", d.Count),
		slog.String("action", string(d.Action)),
		slog.String("rule", string(d.Rule)),
		slog.String("sender", s.msg.Sender),
	}
	if s.msg.AuthUser != "" {
		attrs = append(attrs, slog.String("auth", s.msg.AuthUser))
	}
	if s.msg.Daemon != "" {
		attrs = append(attrs, slog.String("daemon", s.msg.Daemon))
	}
	if d.Source != "" {
		attrs = append(attrs, slog.String("source", string(d.Source)))
	}
	if d.Fallback {
		attrs = append(attrs, slog.Bool("fallback", true))
	}
	if d.List != "" {
		attrs = append(attrs, slog.String("list", d.List))
	}
	s.f.log.LogAttrs(context.Background(), level, "decision", attrs...)
}
