// Package admin is what the operator does to the site's state: list and
// show threads, allow, block or reset one, register list sizes, switch the
// site mode. API is that work; Direct does it on a store (the subcommands
// on Redis, the daemon behind its /admin/ HTTP API), Client asks a running
// daemon's /admin/ API (the subcommands with the memory store, whose state
// lives inside the daemon), and NewHandler serves that API.
//
// It must not decide verdicts (policy does), read configuration files or
// flags (it takes a Config), or print for a terminal (the subcommands
// format the views). Its HTTP API requires the admin token (auth.go) and
// names the authenticated caller in events; the caller serves it only
// where an operator allowed it, and NewHandler also refuses cross-origin
// browser requests and, on loopback, non-loopback hosts.
package admin

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// API is what the operator's subcommands do. Two implementations:
//
//   - Direct does it on a store: the subcommands on Redis directly, and
//     the daemon behind its /admin/ HTTP API (either backend);
//   - Client asks a running daemon's /admin/ API: the subcommands with
//     the memory store, whose state lives inside the daemon.
//
// So every check, store call and event is written once, in Direct.
type API interface {
	// Threads lists the most recently seen threads that stormed, are
	// blocked or overridden (all: every recently seen thread), at most
	// limit of them (1 to store.MaxListLimit; 0: store.DefaultListLimit).
	Threads(ctx context.Context, limit int, all bool) ([]ThreadView, error)
	// Thread reports one thread with its senders.
	Thread(ctx context.Context, t policy.ThreadID) (ThreadView, error)
	// Override sets (allow, block; dur 0: no expiry), removes (none) or
	// resets (reset) a thread's override and emits an override event.
	Override(ctx context.Context, t policy.ThreadID, verb string, dur time.Duration, by string) (OverrideResult, error)
	// Lists reports the list sizes in force: the store's and the config's.
	Lists(ctx context.Context) ([]ListView, error)
	// SetList registers a list's member count in the store.
	SetList(ctx context.Context, addr string, members int) (ListView, error)
	// DeleteList removes a list (its size and its own policy) from the
	// store and reports what is left in force for it (the config's).
	DeleteList(ctx context.Context, addr string) (ListView, error)
	// SetListPolicy sets a list's own policy in the store, in a form
	// policy.ParseListPolicy reads ("" or "{}": none, the config's or the
	// site's applies), and reports the list's effective policy.
	SetListPolicy(ctx context.Context, addr, text string) (ListView, error)
	// Mode reports the site mode in force.
	Mode(ctx context.Context) (ModeView, error)
	// SetMode sets the site mode ("default" or "": the config's) and emits
	// a mode event.
	SetMode(ctx context.Context, mode, by string) (ModeView, error)
	// HistoryAPI: storms and near misses from the history.
	HistoryAPI
	// PostersAPI: the sender gate's allowed posters (posters.go).
	PostersAPI
}

// Override verbs besides policy's allow and block.
const (
	VerbReset = "reset" // forget counts, block, override and senders
	VerbNone  = "none"  // remove the override: normal counting
)

// OverrideResult is what Override did.
type OverrideResult struct {
	Thread   string     `json:"thread"`
	Override string     `json:"override"`          // allow, block, reset or none
	Expires  *time.Time `json:"expires,omitempty"` // allow, block --for
	Warning  string     `json:"warning,omitempty"` // the event was not delivered everywhere
}

// ListView is one list size and where it comes from, and the policy a
// message to this list alone gets (its own over the site's).
type ListView struct {
	List    string `json:"list"`
	Members int    `json:"members"`
	From    string `json:"from,omitempty"` // the store backend (redis, memory) or config; "" when only a policy names the list

	Policy     string `json:"policy,omitempty"`      // the list's own policy, as stored (policy.ListPolicy.String); "" for none
	PolicyFrom string `json:"policy_from,omitempty"` // the store backend or config
	// The effective policy of a message to this list alone.
	MinAudience int              `json:"min_audience"`
	Limits      map[string]int64 `json:"limits"` // every limit rule's value by its key (policy.LimitRules); 0: off
	Action      string           `json:"action"`
	Posters     []string         `json:"posters,omitempty"` // the list's own (site posters and exempt senders may post too)
}

// ModeView is the site mode in force and where it comes from.
type ModeView struct {
	Mode    string `json:"mode"`
	From    string `json:"from"` // the store backend (redis, memory), or config when the store has none
	Warning string `json:"warning,omitempty"`
}

// Error is a refusal with the HTTP status the admin API answers it with;
// its text is what the subcommand prints, on either path.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &Error{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// CheckList checks a list registration as an operator types it.
func CheckList(addr string, members int) error {
	if members <= 0 {
		return badRequest("members %d: want a positive whole number", members)
	}
	if !strings.Contains(addr, "@") {
		return badRequest("list address %q: want local@domain", addr)
	}
	return nil
}

// CheckLimit checks a listing's limit: 0 (the default) to
// store.MaxListLimit, so that no listing builds a page of every thread.
func CheckLimit(limit int) error {
	if limit < 0 || limit > store.MaxListLimit {
		return badRequest("limit %d: want 1 to %d (the most a listing returns)", limit, store.MaxListLimit)
	}
	return nil
}

// ParseMode turns what an operator types into a mode; "default" and ""
// are the config's (policy.Mode "").
func ParseMode(s string) (policy.Mode, error) {
	switch s {
	case "enforce", "monitor", "off":
		return policy.Mode(s), nil
	case "default", "":
		return "", nil
	}
	return "", badRequest("mode %q: want enforce, monitor, off or default", s)
}

var threadIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ParseThread checks a thread id as an operator types it (from a log line
// or a bounce, possibly with the braces of the Redis key).
func ParseThread(s string) (policy.ThreadID, error) {
	t := strings.ToLower(strings.Trim(strings.TrimSpace(s), "{}"))
	if !threadIDRe.MatchString(t) {
		return "", fmt.Errorf("bad thread id %q: want the 16 hex characters from the log line or the bounce, e.g. 3f9a0c1d2b4e5f60", s)
	}
	return policy.ThreadID(t), nil
}

func errUnknownThread(t policy.ThreadID, retention time.Duration) error {
	return fmt.Errorf("thread %s: unknown: no message of it recorded in the last %s (store.retention), or a typo", t, retention)
}
