// Package milter is stormguard's glue to the MTA: it speaks the milter
// protocol (through github.com/d--j/go-milter), collects the envelope and the
// headers of each message, asks policy for the thread and the audience, makes
// the one store call a large-audience message needs, and sends the verdict
// back as a reply code or an X-Stormguard header.
//
// It holds no policy of its own and never asks for the message body.
package milter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// The link cache: how long a node trusts a resolved link, and how many it keeps.
const (
	linkCacheTTL = 10 * time.Second
	linkCacheMax = 100000
)

// Failure policies for store errors (store.on_error).
const (
	OnErrorAccept   = "accept"
	OnErrorTempfail = "tempfail"
)

// Config is what the filter needs; cmd/stormguard builds it from the
// configuration file.
type Config struct {
	Policy       policy.Config
	RejectText   string // 550 text; "{thread}" is replaced by the thread id
	TempfailText string // 451 text; "{thread}" is replaced by the thread id
	Header       string // header added in monitor mode
	OnError      string // OnErrorAccept or OnErrorTempfail
	StoreTimeout time.Duration
	Retention    time.Duration // TTL of links and thread records
	Refresh      time.Duration // how often the cached globals are re-read
	Lists        map[string]int
	// ListPolicies are the lists' own policies from the config file
	// (list_policy); the store's (stormguard:listpolicy) replace them
	// list by list.
	ListPolicies map[string]policy.ListPolicy
	Exempt       []string
	Mode         policy.Mode // used when the store has no mode set
	// The sender gate (policy.Config.Gate): who may post to the
	// audiences it guards, besides the store's set (stormguard:posters),
	// and its refusals' texts, "{list}" replaced by the list.
	Posters        []string // senders, @domains or SASL logins
	GateRejectText string   // 550 text ("": Defaults'); the 451's is the same with 4.x.x for 5.x.x
}

// Defaults is the filter's configuration when nothing is configured: the
// one statement of these defaults (cmd/stormguard's config table reads it).
func Defaults() Config {
	return Config{
		Policy:         policy.Defaults(),
		RejectText:     "5.7.1 This conversation has too many replies to everyone (thread {thread}); reply to the sender only, or contact your mail administrator",
		TempfailText:   "4.7.1 This conversation has too many replies to everyone (thread {thread}); try again later, reply to the sender only, or contact your mail administrator",
		Header:         "X-Stormguard",
		GateRejectText: "5.7.1 Only authorized senders may post to {list}; ask your mail administrator for permission",
		OnError:        OnErrorAccept,
		StoreTimeout:   200 * time.Millisecond,
		Retention:      24 * time.Hour,
		Refresh:        5 * time.Second,
		Mode:           policy.ModeEnforce,
	}
}

// Validate reports the first invalid setting, naming its config key.
func (c Config) Validate() error {
	if err := c.Policy.Validate(); err != nil {
		return err
	}
	switch c.OnError {
	case OnErrorAccept, OnErrorTempfail:
	default:
		return fmt.Errorf("store.on_error: %q is not accept or tempfail", c.OnError)
	}
	if !strings.HasPrefix(c.RejectText, "5.") {
		return fmt.Errorf("policy.reject_text: must start with an enhanced status code 5.x.x, got %q", c.RejectText)
	}
	if !strings.HasPrefix(c.TempfailText, "4.") {
		return fmt.Errorf("policy.tempfail_text: must start with an enhanced status code 4.x.x, got %q", c.TempfailText)
	}
	if strings.ContainsAny(c.RejectText+c.TempfailText, "\r\n") {
		return errors.New("policy.reject_text/tempfail_text: must be one line")
	}
	if c.GateRejectText != "" && !strings.HasPrefix(c.GateRejectText, "5.") {
		return fmt.Errorf("gate.reject_text: must start with an enhanced status code 5.x.x, got %q", c.GateRejectText)
	}
	if strings.ContainsAny(c.GateRejectText, "\r\n") {
		return errors.New("gate.reject_text: must be one line")
	}
	for _, p := range c.Posters {
		if p = strings.TrimSpace(p); p == "" || strings.ContainsAny(p, " \t\r\n") {
			return fmt.Errorf("gate.posters: %q is not a sender, @domain or SASL login", p)
		}
	}
	if c.StoreTimeout <= 0 {
		return fmt.Errorf("redis.timeout: must be positive, got %s", c.StoreTimeout)
	}
	if c.Retention <= 0 {
		return fmt.Errorf("store.retention: must be positive, got %s", c.Retention)
	}
	if c.Refresh <= 0 {
		return fmt.Errorf("store.refresh: must be positive, got %s", c.Refresh)
	}
	for addr, n := range c.Lists {
		if n < 0 {
			return fmt.Errorf("lists: %s: member count %d is negative", addr, n)
		}
	}
	for addr, p := range c.ListPolicies {
		if !strings.Contains(addr, "@") || strings.ContainsAny(addr, " \t\r\n") {
			return fmt.Errorf("list_policy: %q is not a list address (want local@domain)", addr)
		}
		if _, err := policy.ParseListPolicy(p.String()); err != nil {
			return fmt.Errorf("list_policy: %s: %s", addr, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	switch c.Mode {
	case "", policy.ModeEnforce, policy.ModeMonitor, policy.ModeOff:
	default:
		return fmt.Errorf("mode: %q is not enforce, monitor or off", c.Mode)
	}
	return nil
}

// Stats are counters the daemon exposes; all fields are safe for concurrent use.
type Stats struct {
	Decisions      atomic.Uint64 // every verdict
	StoreSkipped   atomic.Uint64 // verdicts that never touched the store
	StoreErrors    atomic.Uint64 // store calls that failed
	Fallbacks      atomic.Uint64 // messages counted in the local memory store because the shared store failed
	Panics         atomic.Uint64 // recovered panics in callbacks
	BadPackets     atomic.Uint64 // malformed milter packets refused by the guard
	GlobalsErrors  atomic.Uint64 // failed refreshes of the cached globals
	lastErrWarning atomic.Int64  // unix nanos of the last store-outage warning, for rate limiting
	lastDataError  atomic.Int64  // unix nanos of the last store data-error line, rate-limited apart
}

// Observer is told about every decision and every store call, for metrics
// and alerts. Its methods run on the message's path: they must not block.
type Observer interface {
	Decided(d Decision, m *Message)
	StoreCall(op string, took time.Duration, err error)
}

// Filter is the per-daemon state shared by every milter connection.
type Filter struct {
	// start is the configuration the filter was made with: what only a
	// restart changes (store.refresh, the hold negotiation) is read from
	// it. Every message reads the configuration in force from globals,
	// which SetConfig (reload.go) replaces.
	start    Config
	swap     sync.Mutex // serializes the writers of globals; readers take no lock
	store    store.Store
	fallback store.Store // this node's memory store, used when store fails and on_error=accept
	log      *slog.Logger
	now      func() time.Time
	globals  atomic.Pointer[globals]
	observer Observer
	links    *linkCache
	Stats    Stats
}

// SetObserver installs o; call it before serving.
func (f *Filter) SetObserver(o Observer) { f.observer = o }

// Mode is the site mode in force (config, overridden by stormguard:mode).
func (f *Filter) Mode() policy.Mode { return f.globals.Load().mode }

// NewFilter makes a filter over st. fallback may be nil when st is already
// the memory store. now may be nil (time.Now).
func NewFilter(cfg Config, st, fallback store.Store, log *slog.Logger, now func() time.Time) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	f := &Filter{start: cfg, store: st, fallback: fallback, log: log, now: now,
		links: newLinkCache(linkCacheTTL, linkCacheMax)}
	f.globals.Store(mergeGlobals(cfg, store.Globals{}))
	return f, nil
}

// Message is what the milter collected about one message.
type Message struct {
	QueueID  string
	Sender   string   // envelope sender, lower case
	Rcpts    []string // envelope recipients, lower case
	Headers  policy.Headers
	AuthUser string // {auth_authen}: the SASL login, when the client authenticated
	Daemon   string // {daemon_name}: which MTA service (e.g. submission, smtpd) handed it over
}

// Decision is a verdict with the facts that explain it, for the reply and
// the log line.
type Decision struct {
	policy.Verdict
	Audience  int
	Count     int   // replies counted in the thread's window
	Delivered int64 // sum of their audiences
	Source    policy.Source
	Subject   string // the subject as written (decoded, one line), for reports and events
	Fallback  bool   // decided by the local memory store because the shared store failed
	Stored    bool   // the message went to a store
	List      string // with rule gate: the list whose own posters exclude the sender, else the largest registered list the message was sent to
	// With Stored: the message's kind as the store counted it, and the
	// registered lists among its envelope recipients (at most MaxLists),
	// for the history (package report).
	Kind  policy.Kind
	Lists []string
	// With Stored: the limits the message was counted under (its lists'
	// strictest, policy.Effective, or the site's), e.g. for the share of
	// them a near miss is.
	Limits policy.Limits

	conf *Config // the configuration it was decided by: its reply texts and header
}

// MaxLists bounds Decision.Lists: a message to more registered lists is
// reported with the first MaxLists of them, in envelope order.
const MaxLists = 16

// Decide works out the verdict for one message. It is called once per
// message, at end of headers.
func (f *Filter) Decide(ctx context.Context, m *Message) Decision {
	d := f.decide(ctx, m)
	f.Stats.Decisions.Add(1)
	if f.observer != nil {
		f.observer.Decided(d, m)
	}
	return d
}

func (f *Filter) decide(ctx context.Context, m *Message) Decision {
	g := f.globals.Load()
	// The configuration this message is decided by, to the end, even if
	// a reload swaps in another meanwhile.
	c := g.cfg
	pm := policy.Parse(m.Headers) // the message's one parse
	audience, large := c.Policy.Audience(m.Rcpts, pm.Recipients, g.lists)
	facts := policy.Facts{
		Mode:      g.mode,
		Exempt:    g.exempt.match(m.Sender),
		Poster:    g.posters.match(m.Sender) || g.posters.login(m.AuthUser),
		AutoReply: policy.IsAutoReply(pm),
		Audience:  audience,
	}
	// The policy of this message: its lists' (messagePolicy), or the
	// site's when no list has one (nothing to look up: no cost).
	pc, gatedBy := c.Policy, ""
	if len(g.policies) > 0 {
		pc, facts.ListGated, gatedBy = messagePolicy(g, m, pm.Recipients, facts.Poster)
	}
	d := Decision{Audience: audience, conf: c}
	if !policy.NeedsStore(pc, facts) {
		d.Verdict = policy.Decide(pc, facts, nil)
		if d.Rule == policy.RuleGate {
			d.List = gatedBy
			if !facts.ListGated {
				d.List = largestList(m.Rcpts, large, g.lists)
			}
			d.Subject = pm.Subject.Display
		}
		f.Stats.StoreSkipped.Add(1)
		return d
	}
	id := policy.Identify(pm, large)
	facts.Reply = id.Reply
	d.Subject = id.Display
	d.Kind = policy.KindOf(c.Policy, facts)
	d.Lists = registeredLists(m.Rcpts, g.lists)

	d.Stored = true
	d.Limits = pc.Limits
	tally, thread, source, err := f.record(ctx, c, f.store, m, id, d.Kind, facts.Audience, pc.Limits)
	if err != nil {
		f.Stats.StoreErrors.Add(1)
		switch {
		case c.OnError == OnErrorTempfail:
			f.warnStore(err, "tempfail")
			d.Verdict = policy.OnStoreError(pc, facts)
			d.Thread = thread
			return d
		case f.fallback == nil: // the memory store itself failed (a deadline): nothing to count in
			f.warnStore(err, "accept")
		default:
			f.warnStore(err, "accept, counting on this node only")
			f.Stats.Fallbacks.Add(1)
			d.Fallback = true
			tally, thread, source, err = f.record(ctx, c, f.fallback, m, id, d.Kind, facts.Audience, pc.Limits)
		}
		if err != nil { // nothing counted it (no fallback, or its deadline passed too): fail open
			d.Verdict = policy.Decide(pc, facts, nil) // accept, rule store_error
			d.Thread = thread
			return d
		}
	}
	d.Verdict = policy.Decide(pc, facts, &tally)
	d.Thread = thread
	d.Count = tally.Count
	d.Delivered = tally.Delivered
	d.Source = source
	return d
}

// record resolves the thread and makes the one atomic store call.
//
// A reply first resolves its identities (policy.Identity.Lookup: its
// ancestors' ids, its Thread-Index GUID, its subject key) through the
// node's link cache, else in one Resolve call, a single round trip; then
// it is recorded in the thread policy.Resolve picks. Originals look
// nothing up.
func (f *Filter) record(ctx context.Context, c *Config, st store.Store, m *Message, id policy.Identity, kind policy.Kind, audience int, limits policy.Limits) (policy.Tally, policy.ThreadID, policy.Source, error) {
	ctx, cancel := context.WithTimeout(ctx, c.StoreTimeout)
	defer cancel()
	var found []policy.ThreadID
	if len(id.Lookup) > 0 {
		var cached bool
		found, cached = f.links.lookup(id.Lookup, f.now())
		if !cached {
			var err error
			start := time.Now()
			found, err = st.Resolve(ctx, id.Lookup)
			f.observeStore(st, "resolve", start, err)
			if err != nil {
				thread, _ := policy.Resolve(id, nil)
				return policy.Tally{}, thread, "", err
			}
			f.links.put(id.Lookup, found, f.now())
		}
	}
	thread, source := policy.Resolve(id, found)
	if thread == "" { // no message-id and nothing to thread on: a one-off thread
		thread = randomThread()
	}
	rec := store.Record{
		Thread:    thread,
		Message:   id.Own,
		Kind:      kind, // decided once, in decide (Decision.Kind)
		Audience:  audience,
		Sender:    m.Sender,
		Subject:   id.Display,
		Now:       f.now(),
		Limits:    limits, // the message's: its lists' strictest (messagePolicy)
		Links:     id.Links,
		Retention: c.Retention,
	}
	start := time.Now()
	tally, err := st.Record(ctx, rec)
	f.observeStore(st, "record", start, err)
	if err == nil && tally.Thread != "" {
		thread = tally.Thread
	}
	// The link cache holds only what the store answered (Resolve): the
	// store writes a message's links only if it was let through and
	// only where none existed (first writer wins), so the thread this
	// message was recorded in is not necessarily where its links lead.
	return tally, thread, source, err
}

// observeStore reports a call to the shared store (not to the fallback).
func (f *Filter) observeStore(st store.Store, op string, start time.Time, err error) {
	if f.observer != nil && st == f.store {
		f.observer.StoreCall(op, time.Since(start), err)
	}
}

// warnStore logs a store failure at most once every 10 seconds. A data
// error (a key of the wrong type: an operator must fix it) is logged as
// what it is, at error level, and rate-limited apart from outages so that
// neither hides the other.
func (f *Filter) warnStore(err error, what string) {
	last, msg, level := &f.Stats.lastErrWarning, "store unavailable", slog.LevelWarn
	if store.IsDataError(err) {
		last, msg, level = &f.Stats.lastDataError, "store data error", slog.LevelError
	}
	now := f.now().UnixNano()
	prev := last.Load()
	if now-prev < int64(10*time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	f.log.Log(context.Background(), level, msg, "err", err, "on_error", what,
		"store_errors", f.Stats.StoreErrors.Load(), "fallbacks", f.Stats.Fallbacks.Load())
}

// replyText is the SMTP text for a refusal, with the thread filled in.
func (c *Config) replyText(a policy.Action, t policy.ThreadID) string {
	text := c.RejectText
	if a == policy.ActionTempfail {
		text = c.TempfailText
	}
	if t == "" {
		t = "unknown"
	}
	return strings.ReplaceAll(text, "{thread}", string(t))
}

// gateText is the SMTP text for a refusal by the sender gate, with the
// list filled in: gate.reject_text, whose enhanced code 5.x.x becomes
// 4.x.x for a tempfail.
func (c *Config) gateText(a policy.Action, list string) string {
	text := c.GateRejectText
	if text == "" {
		text = Defaults().GateRejectText
	}
	if a == policy.ActionTempfail {
		text = "4" + text[1:] // Validate: it starts with "5."
	}
	if list == "" {
		list = "this list"
	}
	return strings.ReplaceAll(text, "{list}", list)
}

// messagePolicy is the policy for message m under the lists' own policies
// (policy.Effective over the lists it goes to that have one), whether a
// list's own posters stop its sender (policy.ListGated: poster says it is
// a site poster), and the first list that does. The lists it goes to are
// its envelope recipients', and with policy.split_envelopes also its
// header's (hdr), as for its audience (policy.Config.Audience): a list a
// forged header names reaches nobody, so its policy must not apply. It
// allocates nothing for a message to at most 4 lists with a policy.
func messagePolicy(g *globals, m *Message, hdr []string, poster bool) (c policy.Config, gated bool, gatedBy string) {
	var buf [4]policy.ListPolicy
	lists := buf[:0]
	add := func(addrs []string) {
		for _, a := range addrs {
			lp, ok := g.policies[a]
			if !ok {
				if a = strings.ToLower(strings.Trim(a, "<> ")); a == "" {
					continue
				}
				if lp, ok = g.policies[a]; !ok {
					continue
				}
			}
			lists = append(lists, lp.ListPolicy)
			allowed := poster || lp.posters.match(m.Sender) || lp.posters.login(m.AuthUser)
			if policy.ListGated(lp.ListPolicy, allowed) && !gated {
				gated, gatedBy = true, a
			}
		}
	}
	add(m.Rcpts)
	if g.cfg.Policy.SplitEnvelopes {
		add(hdr)
	}
	return policy.Effective(g.cfg.Policy, lists), gated, gatedBy
}

// largestList is the registered list with the most members among the
// envelope recipients, or else among large (the header's).
func largestList(rcpts, large []string, lists map[string]int) string {
	best, n := "", 0
	pick := func(addrs []string) {
		for _, a := range addrs {
			a = strings.Trim(a, "<> ")
			if m, ok := lists[a]; ok && (m > n || best == "") {
				best, n = a, m
			}
		}
	}
	pick(rcpts)
	if best == "" {
		pick(large)
	}
	return best
}

// registeredLists are the registered lists among the envelope recipients,
// each once, in envelope order, at most MaxLists.
func registeredLists(rcpts []string, lists map[string]int) []string {
	var out []string
	for _, a := range rcpts {
		a = strings.Trim(a, "<> ")
		if _, ok := lists[a]; ok && !slices.Contains(out, a) {
			if out = append(out, a); len(out) == MaxLists {
				break
			}
		}
	}
	return out
}

func randomThread() policy.ThreadID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return policy.ThreadID(hex.EncodeToString(b[:]))
}
