package admin

import (
	"maps"
	"slices"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// ThreadView is one thread as the subcommands print it (--json).
type ThreadView struct {
	Thread          string       `json:"thread"`
	Subject         string       `json:"subject"`
	OriginalSender  string       `json:"original_sender"`
	Started         time.Time    `json:"started"`
	LastSeen        time.Time    `json:"last_seen"`
	Audience        int          `json:"audience"`
	Replies         int          `json:"replies"`  // large-audience replies seen: accepted + blocked + allowed
	Accepted        int          `json:"accepted"` // counted within the limits
	Blocked         int          `json:"blocked"`  // refused
	Allowed         int          `json:"allowed"`  // let through by an operator's allow
	InWindow        int          `json:"in_window"`
	State           string       `json:"state"`
	StormAt         *time.Time   `json:"storm_at,omitempty"`
	StormRule       string       `json:"storm_rule,omitempty"`
	BlockActive     bool         `json:"block_active,omitempty"` // a storm block runs, whatever the override
	BlockExpires    *time.Time   `json:"block_expires,omitempty"`
	Override        string       `json:"override,omitempty"`
	OverrideExpires *time.Time   `json:"override_expires,omitempty"`
	Senders         []SenderView `json:"senders,omitempty"`
}

// SenderView is one sender of the thread and what their last message got.
type SenderView struct {
	Sender  string `json:"sender"`
	Status  string `json:"status"`  // the store's: noted, counted, duplicate, crossed, blocked, allow, block
	Verdict string `json:"verdict"` // allowed or blocked
}

// Thread states, most pressing first.
const (
	StateOperatorBlock = "operator-block" // an operator's block override
	StateOperatorAllow = "operator-allow" // an operator's allow override (wins over a block)
	StateBlocked       = "blocked"        // a storm block is running
	StateStormOver     = "storm-over"     // it stormed; the block has run out or was lifted
	StateQuiet         = "quiet"          // never stormed
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func viewOf(info store.ThreadInfo, now time.Time, senders bool) ThreadView {
	v := ThreadView{
		Thread: string(info.Thread), Subject: info.Subject, OriginalSender: info.Sender,
		Started: info.FirstSeen.UTC(), LastSeen: info.LastSeen.UTC(), Audience: info.Audience,
		Replies: info.Accepted + info.Refused + info.Allowed, Accepted: info.Accepted,
		Blocked: info.Refused, Allowed: info.Allowed, InWindow: info.InWindow,
		StormAt: timePtr(info.StormAt), StormRule: info.StormRule, BlockActive: info.Blocked,
		Override: string(info.Override),
	}
	if info.Blocked && info.BlockTTL > 0 {
		v.BlockExpires = timePtr(now.Add(info.BlockTTL).Truncate(time.Second))
	}
	if info.Override != policy.OverrideNone && info.OverrideTTL > 0 {
		v.OverrideExpires = timePtr(now.Add(info.OverrideTTL).Truncate(time.Second))
	}
	switch {
	case info.Override == policy.OverrideBlock:
		v.State = StateOperatorBlock
	case info.Override == policy.OverrideAllow:
		v.State = StateOperatorAllow
	case info.Blocked:
		v.State = StateBlocked
	case !info.StormAt.IsZero():
		v.State = StateStormOver
	default:
		v.State = StateQuiet
	}
	if senders {
		v.Senders = senderViews(info.Senders)
	}
	return v
}

// senderViews are a thread's senders, sorted, with what their last
// message got.
func senderViews(senders map[string]string) []SenderView {
	var out []SenderView
	for _, s := range slices.Sorted(maps.Keys(senders)) {
		st := senders[s]
		verdict := "allowed"
		switch policy.Status(st) {
		case policy.StatusCrossed, policy.StatusBlocked:
			verdict = "blocked"
		}
		if st == string(policy.OverrideBlock) {
			verdict = "blocked"
		}
		out = append(out, SenderView{Sender: s, Status: st, Verdict: verdict})
	}
	return out
}

// isStorm: a thread the storms listing shows without --all.
func (v ThreadView) isStorm() bool { return v.State != StateQuiet }
