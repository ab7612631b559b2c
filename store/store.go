// Package store keeps stormguard's shared state: per-thread reply counts,
// blocks and overrides, the identity links that map message-ids,
// Thread-Index GUIDs and subject keys to threads, and the site-wide globals
// (list sizes, exempt senders, mode).
//
// Two implementations share one contract, checked by store/storetest:
// Memory (one node, the default) and Redis (all nodes of a site). The
// storm decision is made inside one atomic operation (Record) so that any
// number of nodes admit exactly as many replies as one would. The store
// decides nothing else: verdicts are policy's. It keeps no history of
// storms once a thread's records expire: package history does, on the
// same Redis under the key names built here (Keys).
package store

import (
	"context"
	"errors"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// ErrNotFound is returned by admin lookups of a thread the store does not know.
var ErrNotFound = errors.New("store: not found")

// ErrInvalid is returned, wrapped, for arguments a store refuses: a thread
// id or key that is not safe in a Redis key, a record without a window, an
// override or mode value that does not exist.
var ErrInvalid = errors.New("store: invalid argument")

// DefaultPrefix is the prefix of every Redis key when none is configured.
const DefaultPrefix = "stormguard:"

// What a thread keeps of its senders (ThreadInfo.Senders, the {T}:senders
// hash): at most MaxSenders of them, the first to write, each cut to its
// first MaxSenderLen bytes (RFC 5321's longest path is 256), so that
// refused mail from ever new senders cannot grow a thread. The thread's
// own sender (ThreadInfo.Sender) is cut the same way.
const (
	MaxSenders   = 500
	MaxSenderLen = 256
)

// Record is one message to record and check, atomically, in its thread.
type Record struct {
	Thread   policy.ThreadID
	Message  policy.Key // the message's own message-id key ("" if it had none)
	Kind     policy.Kind
	Audience int
	Sender   string // envelope sender, for reports
	Subject  string // for reports; the store keeps the first one it sees
	Now      time.Time
	Limits   policy.Limits
	// Links are the message's identities (own message-id, Thread-Index
	// GUID, subject key) to point at Thread for Retention, so that later
	// replies naming any of them find this thread.
	Links     []policy.Key
	Retention time.Duration // TTL of links and thread records
}

// Globals are the site-wide settings operators change with redis-cli. The
// daemon caches them and refreshes them every few seconds.
type Globals struct {
	Lists  map[string]int // list address (lower case) -> member count
	Exempt []string       // senders or @domains, lower case
	// Posters may post past the sender gate: senders, @domains or SASL
	// logins, lower case.
	Posters []string
	// ListPolicies are the lists' own policies (list address, lower
	// case); a list without one is absent.
	ListPolicies map[string]policy.ListPolicy
	Mode         policy.Mode // "" when unset (the configured default applies)

	// Problems are values left out or capped because they are not usable
	// as written (store/globals.go), the first few; Invalid counts all of
	// them by key. Only the Redis store has any.
	Problems []Problem
	Invalid  map[string]int
}

// Store is the hot-path interface: what the daemon needs per message.
type Store interface {
	// Resolve returns, for each key, the thread it is linked to, or "" when
	// it is not linked. It reads links only and writes nothing.
	Resolve(ctx context.Context, keys []policy.Key) ([]policy.ThreadID, error)
	// Record records one message in its thread and reports, in the same
	// atomic step, the thread's override, block and counts. It also writes
	// the message's identity links, each only where none exists and only
	// when the message was let through (policy.MayLink). Tally.Thread is
	// the thread it was recorded in.
	Record(ctx context.Context, r Record) (policy.Tally, error)
	// Globals reads the site-wide settings.
	Globals(ctx context.Context) (Globals, error)
	// Close releases the store's resources.
	Close() error
}

// ThreadInfo is what the store knows about one thread: the operators' view
// (stormguard show T, storms).
type ThreadInfo struct {
	Thread    policy.ThreadID
	Subject   string // the original's subject if it was seen, else the first one seen
	Sender    string // the original's sender if it was seen, else the first one seen
	FirstSeen time.Time
	LastSeen  time.Time
	StormAt   time.Time // when the thread last crossed a limit; zero if never
	StormRule string    // the rule it crossed (one of policy.LimitRules)
	Audience  int       // the largest audience of a message recorded in the thread

	Accepted int // replies counted
	Refused  int // replies refused: crossing, blocked or override block
	Allowed  int // replies let through by an override allow
	InWindow int // counted replies still inside the window at the time asked

	Blocked     bool
	BlockTTL    time.Duration   // remaining block; 0 while blocked means no expiry
	Override    policy.Override // OverrideNone also when the stored value is not a valid override
	OverrideTTL time.Duration   // 0 means no expiry
	Senders     map[string]string
}

// Admin is what operators (the stormguard subcommands) and tests do besides
// the hot path. Every method is safe to run while the daemon is recording.
type Admin interface {
	// SetOverride sets a thread's override for ttl (0: no expiry).
	// OverrideNone deletes it.
	SetOverride(ctx context.Context, t policy.ThreadID, o policy.Override, ttl time.Duration) error
	// Reset forgets a thread's counted replies, block, override and senders
	// and zeroes its counters; the thread's identity (subject, original
	// sender, first seen) stays. ErrNotFound if the store knows nothing of it.
	Reset(ctx context.Context, t policy.ThreadID) error
	// SetList sets a list's member count; members <= 0 deletes it.
	SetList(ctx context.Context, addr string, members int) error
	// SetListPolicy sets a list's own policy; the zero policy deletes it.
	SetListPolicy(ctx context.Context, addr string, p policy.ListPolicy) error
	// SetMode sets the site-wide mode; "" deletes it (the configured
	// default applies).
	SetMode(ctx context.Context, m policy.Mode) error
	// AddExempt adds a sender or @domain to the exempt set.
	AddExempt(ctx context.Context, sender string) error
	// AddPoster adds a sender, @domain or SASL login to the gate's
	// allowed posters.
	AddPoster(ctx context.Context, poster string) error
	// RemovePoster takes a sender, @domain or SASL login out of the
	// store's allowed posters; removed is false when it was not there.
	RemovePoster(ctx context.Context, poster string) (removed bool, err error)
	// Thread reports one thread, its window as of now. ErrNotFound if
	// unknown. Block and override TTLs are the store's own: Redis' clock
	// for Redis, now for the memory store.
	Thread(ctx context.Context, t policy.ThreadID, now time.Time) (ThreadInfo, error)
	// Lister: Threads lists the recently seen threads (store/list.go).
	Lister
}
