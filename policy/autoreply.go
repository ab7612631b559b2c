package policy

import (
	"mime"
	"strings"
)

// IsAutoReply reports whether a message was sent by a program on behalf of
// a person: an out-of-office notice, a vacation message, a read receipt or
// a delivery report. Auto-replies are never counted toward a storm; sent to
// more than policy.auto_reply_max_audience mailboxes they are refused.
//
// The usual signals are Auto-Submitted other than "no", Precedence
// bulk/junk/list, out-of-office and read receipts. Taken alone, the weak ones
// would also catch newsletters and system notifications, which are sent to
// big lists on purpose, so they are refined (docs/design.md, "Auto-replies"):
//
// Always an auto-reply (strong signals):
//   - Auto-Submitted: auto-replied (RFC 3834);
//   - a read receipt or delivery report: Content-Type multipart/report with
//     report-type disposition-notification (RFC 8098) or delivery-status
//     (RFC 3464);
//   - an X-Autoreply or X-Autorespond header (other than "no", "false",
//     "0");
//   - an out-of-office subject ("Automatic reply:", "Out of Office:",
//     "Abwesenheitsnotiz:", "Réponse automatique :", "Autosvar:", "自动回复:"
//     … after any gateway tags).
//
// An auto-reply only when the message is also a reply (weak signals):
//   - Auto-Submitted other than "no" (auto-generated, auto-notified, …);
//   - Precedence: bulk or junk, unless the message carries a List-Id.
//
// "A reply" is Message.IsReply: an In-Reply-To or References id, an
// Outlook Thread-Index with child blocks, or a reply prefix on the subject:
// a bulk message that answers another is a vacation program's answer, one
// that does not is a newsletter or a notification.
//
// Precedence: list is not a signal at all, and neither is Precedence on a
// message with a List-Id: mailing list managers (Mailman, Sympa, Google
// Groups, majordomo) put them on every post they distribute, including
// people's replies, and a list's copy of an admitted reply must not be
// refused as an auto-reply.
func IsAutoReply(m Message) bool {
	if m.AutoSubmitted == "auto-replied" || m.Report || m.XAutoreply || m.XAutorespond || m.Subject.OutOfOffice {
		return true
	}
	weak := m.AutoSubmitted != "" && m.AutoSubmitted != "no"
	if (m.Precedence == "bulk" || m.Precedence == "junk") && !m.ListID {
		weak = true
	}
	return weak && m.IsReply()
}

// headerToken returns the first token of a structured header value, lower
// case: "Auto-Replied; owner-email=..." gives "auto-replied".
func headerToken(v string) string {
	v = unfold(v)
	if i := strings.IndexAny(v, ";( \t"); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(cutBytes(v, 64))
}

// flagSet reports whether an X-Autoreply style header is present with a
// value that does not deny it.
func flagSet(v string) bool {
	switch headerToken(v) {
	case "", "no", "false", "0", "off":
		return false
	}
	return true
}

// isReport reports whether a Content-Type is a read receipt or a delivery
// report.
func isReport(ct string) bool {
	ct = unfold(ct)
	if ct == "" {
		return false
	}
	if len(ct) > 4096 {
		ct = ct[:4096]
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		// Tolerate broken parameters: look at the text itself.
		l := strings.ToLower(ct)
		return strings.HasPrefix(l, "multipart/report") &&
			(strings.Contains(l, "disposition-notification") || strings.Contains(l, "delivery-status"))
	}
	if mt != "multipart/report" {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(params["report-type"])) {
	case "disposition-notification", "delivery-status":
		return true
	}
	return false
}
