// Package policy holds stormguard's decisions as pure code: which
// conversation a message belongs to, how many mailboxes it reaches, whether
// it is an auto-reply, and the verdict once the store has counted it.
//
// A message is decided in two calls, with the store between them:
// Site.Plan (what the message is, under the site's settings, and what to
// ask the store) and Plan.Decide (the verdict on the store's answer). Its
// raw Headers are unfolded, decoded and parsed once, by Parse inside Plan,
// into a Message whose typed fields Audience, IsAutoReply and Identify
// read.
//
// It must not do I/O and must not read the clock: time comes in as an
// argument, state comes in as a Tally from the store. Everything here can be
// read and tested alone.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Key is one identity of a message, hashed: a message-id, an Outlook
// Thread-Index GUID or a subject-and-audience key. It is 32 lowercase hex
// characters, so it is safe in a Redis key and a log line whatever the
// header said.
type Key string

// ThreadID names one conversation: 16 lowercase hex characters. It is what
// people see in logs, bounces, the CLI and Redis keys.
type ThreadID string

// Key kinds, the prefixes hashed into a Key so that a message-id and a
// subject with the same text never collide.
const (
	kindMessageID   = "mid:"
	kindThreadIndex = "tix:"
	kindSubject     = "subj:"
)

func makeKey(kind, s string) Key {
	sum := sha256.Sum256([]byte(kind + s))
	return Key(hex.EncodeToString(sum[:16]))
}

// MessageIDKey is the identity key of a message-id (already normalised by
// the caller: no angle brackets, no surrounding space).
func MessageIDKey(id string) Key { return makeKey(kindMessageID, id) }

// Thread is the thread a key starts when nothing else is known about it: the
// first 16 hex characters of the key.
func (k Key) Thread() ThreadID {
	if len(k) < 16 {
		return ""
	}
	return ThreadID(k[:16])
}

// Override is an operator's decision for one thread.
type Override string

const (
	OverrideNone  Override = ""
	OverrideAllow Override = "allow"
	OverrideBlock Override = "block"
)

// Mode is the site-wide switch (Redis key stormguard:mode).
type Mode string

const (
	ModeEnforce Mode = "enforce" // refuse storms with policy.action
	ModeMonitor Mode = "monitor" // count and tag, never refuse
	ModeOff     Mode = "off"     // pass everything, count nothing
)

// Action is what happens to a message.
type Action string

const (
	ActionAccept   Action = "accept"
	ActionReject   Action = "reject"   // 550 5.7.1
	ActionTempfail Action = "tempfail" // 451 4.7.1
	ActionTag      Action = "tag"      // accept and add an X-Stormguard header (monitor)
	ActionHold     Action = "hold"     // accept into the MTA's hold queue (milter quarantine), for an operator to release or delete
)

// ConfigAction is the configured response to a storm (policy.action) or
// to a message the sender gate stops (gate.action).
type ConfigAction string

const (
	ConfigReject   ConfigAction = "reject"
	ConfigTempfail ConfigAction = "tempfail"
	ConfigMonitor  ConfigAction = "monitor"
	ConfigHold     ConfigAction = "hold" // the MTA's hold queue (milter quarantine)
)

// Rule names the rule that decided a verdict. Logged and counted, never sent
// to the SMTP client.
type Rule string

const (
	RuleModeOff        Rule = "mode_off"
	RuleExempt         Rule = "exempt"
	RuleGate           Rule = "gate" // a large-audience message from a sender who may not post to it (Gate)
	RuleSmallAudience  Rule = "small_audience"
	RuleOverrideAllow  Rule = "override_allow"
	RuleOverrideBlock  Rule = "override_block"
	RuleAutoReply      Rule = "auto_reply"
	RuleOriginal       Rule = "original" // a large-audience message that is not a reply
	RuleDuplicate      Rule = "duplicate"
	RuleBlocked        Rule = "blocked"
	RuleMaxReplies     Rule = "max_replies"
	RuleDeliveryBudget Rule = "delivery_budget"
	RuleCounted        Rule = "counted"
	RuleStoreError     Rule = "store_error"
)

// Kind tells the store how to treat a message it records.
type Kind string

const (
	KindOriginal  Kind = "original"  // not a reply: note the thread, count nothing
	KindReply     Kind = "reply"     // a large-audience reply: count it
	KindAutoReply Kind = "autoreply" // read the override only, count nothing
)

// Limits are the counting thresholds the store applies inside its atomic
// record-and-detect step.
type Limits struct {
	MaxReplies     int           // replies allowed per window; the next is a storm
	DeliveryBudget int64         // sum of audiences allowed per window; the reply that passes it is a storm
	Window         time.Duration // sliding window
	BlockFor       time.Duration // how long a storm blocks the thread
}

// Status is what the store's atomic step did with one message.
type Status string

const (
	StatusNoted     Status = "noted"     // recorded, not counted (original, auto-reply, override present)
	StatusCounted   Status = "counted"   // a reply counted within the limits
	StatusDuplicate Status = "duplicate" // the same message (id, sender, audience) was already counted in the window; Repeats
	StatusBlocked   Status = "blocked"   // the thread was already blocked; not counted
	StatusCrossed   Status = "crossed"   // this reply would cross a limit: the thread is now blocked
)

// MaxDuplicates is how many times a counted message may pass again as
// itself (StatusDuplicate): the same message-id from the same envelope
// sender to the same audience, as an MTA's retry or a relay hop sends it.
const MaxDuplicates = 3

// SenderPrint is the fingerprint of an envelope sender that the store
// keeps with each counted message-id, so that only the same message from
// the same sender passes again as a duplicate: 8 hex characters.
func SenderPrint(sender string) string {
	sum := sha256.Sum256([]byte("sender:" + sender))
	return hex.EncodeToString(sum[:4])
}

// Tally is the result of the store's one atomic step for one message.
type Tally struct {
	Override  Override
	Status    Status
	Count     int           // replies counted in the window, including this one if counted
	Delivered int64         // sum of their audiences
	Crossed   Rule          // with StatusCrossed: RuleMaxReplies or RuleDeliveryBudget
	BlockTTL  time.Duration // remaining block time when blocked or crossed
	// Thread is the thread the store recorded the message in (the
	// record's). Policy does not read it.
	Thread ThreadID
}
