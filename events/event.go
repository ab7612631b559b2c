// Package events tells the outside world what stormguard did: storms,
// operators' overrides and mode changes, and summaries of refused replies.
// An Event is one JSON line, published on the Redis channel (or logged with
// the memory store), POSTed to a webhook and, for storms, mailed to the
// admins through the local MTA (mail.go), each outlet with its own bounded
// queue and worker.
//
// It must never hold up mail: Emit never blocks, a full queue drops the
// event and counts it, and delivery (retries, backoff) happens off the
// mail path. It does not read configuration files or export metrics: the
// caller passes a Config and reads Stats.
package events

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Type is what an event reports.
type Type string

// Event types.
const (
	TypeStorm    Type = "storm_detected"  // a reply crossed a limit: the thread is now blocked
	TypeOverride Type = "override"        // an operator allowed, blocked or reset a thread
	TypeMode     Type = "mode"            // an operator switched the site mode
	TypeBlocked  Type = "blocked_summary" // replies refused in a thread since the last summary
	TypeGateHold Type = "gate_hold"       // the sender gate held a message in the MTA's hold queue
)

// overrideRemoved is the Override of an event whose override was removed
// (the admin package's "none" verb).
const overrideRemoved = "none"

// Event is one JSON event, published on the Redis channel stormguard:events
// (logged with the memory store) and POSTed to alerts.webhook_url. Text is
// one human line, so that Slack and Teams incoming webhooks show it as is;
// the other fields are for machines.
type Event struct {
	Type           Type       `json:"type"`
	Text           string     `json:"text"`
	Time           time.Time  `json:"time"`
	Node           string     `json:"node"`
	Thread         string     `json:"thread,omitempty"`
	Subject        string     `json:"subject,omitempty"`
	OriginalSender string     `json:"original_sender,omitempty"`
	Sender         string     `json:"sender,omitempty"`    // storm: the reply that crossed; summary: the last one refused
	Rule           string     `json:"rule,omitempty"`      // storm: the limit crossed, one of policy.LimitRules
	Action         string     `json:"action,omitempty"`    // what the refused replies got: reject, tempfail or tag
	Audience       int        `json:"audience,omitempty"`  // storm: the crossing reply's audience
	Count          int        `json:"count,omitempty"`     // storm: replies counted in the window
	Delivered      int64      `json:"delivered,omitempty"` // storm: sum of their audiences
	BlockFor       string     `json:"block_for,omitempty"` // storm: how long the thread is blocked
	Refused        int        `json:"refused,omitempty"`   // summary: replies refused in the period
	Period         string     `json:"period,omitempty"`    // summary: its length
	Override       string     `json:"override,omitempty"`  // override: allow, block, reset or none (removed)
	Mode           string     `json:"mode,omitempty"`      // mode: enforce, monitor, off or "" (the config's)
	Expires        *time.Time `json:"expires,omitempty"`   // override: when it runs out
	By             string     `json:"by,omitempty"`        // override, mode: the user who ran the command
	Fallback       bool       `json:"fallback,omitempty"`  // storm: decided by this node alone, Redis was down
	List           string     `json:"list,omitempty"`      // gate hold: the guarded list the message went to
	QueueID        string     `json:"queue_id,omitempty"`  // gate hold: the held message's queue id on Node
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// quoteSubject makes a header-derived subject safe for one log or chat line.
func quoteSubject(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 80 {
		s = string(r[:79]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

func (e *Event) fillText() {
	subj := ""
	if e.Subject != "" {
		subj = " " + quoteSubject(e.Subject)
	}
	switch e.Type {
	case TypeStorm:
		orig := ""
		if e.OriginalSender != "" {
			orig = " from " + e.OriginalSender
		}
		fb := ""
		if e.Fallback {
			fb = " (Redis down: this node only)"
		}
		e.Text = fmt.Sprintf("stormguard: reply-all storm in thread %s%s%s: reply by %s to %d mailboxes refused (%s, %d replies counted), thread blocked for %s on %s%s",
			e.Thread, subj, orig, e.Sender, e.Audience, e.Rule, e.Count, e.BlockFor, e.Node, fb)
	case TypeOverride:
		until := ""
		if e.Expires != nil {
			until = " until " + e.Expires.UTC().Format(time.RFC3339)
		}
		what := e.Override
		if what == overrideRemoved {
			what = "override removed"
		}
		e.Text = fmt.Sprintf("stormguard: thread %s%s: %s%s by %s", e.Thread, subj, what, until, e.By)
	case TypeMode:
		m := e.Mode
		if m == "" {
			m = "the configured default"
		}
		e.Text = fmt.Sprintf("stormguard: site mode set to %s by %s", m, e.By)
	case TypeGateHold:
		e.Text = fmt.Sprintf("stormguard: message%s from %s to %s (%d mailboxes) held by the sender gate on %s as %s",
			subj, e.Sender, e.List, e.Audience, e.Node, e.QueueID)
	case TypeBlocked:
		e.Text = fmt.Sprintf("stormguard: %d more replies to everyone refused in thread %s%s in the last %s on %s (last from %s)",
			e.Refused, e.Thread, subj, e.Period, e.Node, e.Sender)
	}
}
