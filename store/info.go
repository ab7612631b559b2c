package store

import (
	"maps"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// threadInfo is a thread's state as either store holds it (times and TTLs
// in ms), turned into a ThreadInfo by one function so that both report it
// the same way.
type threadInfo struct {
	subject, sender         string
	origSubject, origSender string
	origSeen                bool
	firstSeen, lastSeen     int64
	stormAt                 int64
	stormRule               string
	audience                int
	accepted, refused       int
	allowed, inWindow       int
	blocked                 bool
	blockTTL                int64  // ms; <= 0 while blocked: no expiry
	override                string // raw
	overrideTTL             int64  // ms; <= 0: no expiry
	senders                 map[string]string
}

// isStorm is ThreadInfo.IsStorm.
func (x threadInfo) isStorm() bool {
	return x.stormAt > 0 || x.blocked || parseOverride(x.override) != policy.OverrideNone
}

func (x threadInfo) build(t policy.ThreadID) ThreadInfo {
	info := ThreadInfo{
		Thread:    t,
		Subject:   x.subject,
		Sender:    x.sender,
		FirstSeen: unixMilli(x.firstSeen),
		LastSeen:  unixMilli(x.lastSeen),
		StormAt:   unixMilli(x.stormAt),
		StormRule: x.stormRule,
		Audience:  x.audience,
		Accepted:  x.accepted,
		Refused:   x.refused,
		Allowed:   x.allowed,
		InWindow:  x.inWindow,
		Blocked:   x.blocked,
		Override:  parseOverride(x.override),
		Senders:   maps.Clone(x.senders),
	}
	if x.origSeen && x.origSubject != "" {
		info.Subject = x.origSubject
	}
	if x.origSeen && x.origSender != "" {
		info.Sender = x.origSender
	}
	if x.blocked && x.blockTTL > 0 {
		info.BlockTTL = time.Duration(x.blockTTL) * time.Millisecond
	}
	if info.Override != policy.OverrideNone && x.overrideTTL > 0 {
		info.OverrideTTL = time.Duration(x.overrideTTL) * time.Millisecond
	}
	if info.Senders == nil {
		info.Senders = map[string]string{}
	}
	return info
}

func unixMilli(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
