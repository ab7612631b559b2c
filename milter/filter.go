// Package milter is stormguard's glue to the MTA: it speaks the milter
// protocol (through github.com/d--j/go-milter), collects the envelope and the
// headers of each message, asks policy for its plan (policy.Site.Plan), makes
// the store calls the plan needs (through the node's link cache, and on
// this node's memory store when the shared one fails), asks policy for the
// verdict on the store's answer (policy.Plan.Decide), and sends it back as
// a reply code or an X-Stormguard header.
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
	"net/netip"
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
	RejectText   string        // 550 text; "{thread}" is replaced by the thread id
	TempfailText string        // 451 text; "{thread}" is replaced by the thread id
	Header       string        // header added in monitor mode
	OnError      string        // OnErrorAccept or OnErrorTempfail
	StoreTimeout time.Duration // deadline of one store call
	// StoreBudget bounds a message's store calls, one retry included: a
	// call that fails is tried once more if at least half a StoreTimeout
	// of the budget is left, and only then does OnError apply. Below
	// 1.5 StoreTimeout there is no retry.
	StoreBudget time.Duration
	// Node is this node's name, in the store's heartbeat (how many nodes
	// share it: an outage's share, policy.OutageLimits).
	Node      string
	Retention time.Duration // TTL of links and thread records
	Refresh   time.Duration // how often the cached globals are re-read
	Lists     map[string]int
	// ListPolicies are the lists' own policies from the config file
	// (list_policy); the store's (stormguard:listpolicy) replace them
	// list by list.
	ListPolicies map[string]policy.ListPolicy
	Exempt       []string
	// Recipients is how the MTA resolves a recipient address
	// (policy.recipient_delimiter, policy.local_domains).
	Recipients policy.Recipients
	Mode       policy.Mode // used when the store has no mode set
	// The sender gate (policy.Config.Gate): who may post to the
	// audiences it guards, besides the store's set (stormguard:posters),
	// and its refusals' texts, "{list}" replaced by the list.
	Posters        []string // senders, @domains or SASL logins
	GateRejectText string   // 550 text ("": Defaults'); the 451's is the same with 4.x.x for 5.x.x
	// SenderAuth: exempt senders and posters named by address or @domain
	// count only for a client that authenticated (SASL) or connects from
	// TrustedNetworks (policy.Site.SenderAuth).
	SenderAuth      bool
	TrustedNetworks []netip.Prefix
}

// Defaults is the filter's configuration when nothing is configured: the
// one statement of these defaults (cmd/stormguard's config table reads it).
func Defaults() Config {
	c := Config{
		Policy:         policy.Defaults(),
		RejectText:     "5.7.1 This conversation has too many replies to everyone (thread {thread}); reply to the sender only, or contact your mail administrator",
		TempfailText:   "4.7.1 This conversation has too many replies to everyone (thread {thread}); try again later, reply to the sender only, or contact your mail administrator",
		Header:         "X-Stormguard",
		GateRejectText: "5.7.1 Only authorized senders may post to {list}; ask your mail administrator for permission",
		OnError:        OnErrorAccept,
		StoreTimeout:   200 * time.Millisecond,
		StoreBudget:    500 * time.Millisecond,
		Retention:      24 * time.Hour,
		Refresh:        5 * time.Second,
		Recipients:     policy.Recipients{Delimiter: "+"},
		Mode:           policy.ModeEnforce,
	}
	c.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	return c
}

// Validate reports the first invalid setting, naming its config key.
func (c Config) Validate() error {
	if err := c.Policy.Validate(); err != nil {
		return err
	}
	if err := c.Recipients.Validate(); err != nil {
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
	if c.StoreBudget < 0 {
		return fmt.Errorf("store.budget: must be 0 (no retry) or positive, got %s", c.StoreBudget)
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
	StoreErrors    atomic.Uint64 // messages whose shared store calls failed, the retry too
	StoreRetries   atomic.Uint64 // messages whose shared store call failed once and was tried again
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
	// which SetConfig (milter/reload.go) replaces.
	start    Config
	swap     sync.Mutex // serializes the writers of globals; readers take no lock
	store    store.Store
	fallback store.Store // this node's memory store, used when store fails and on_error=accept
	log      *slog.Logger
	now      func() time.Time
	globals  atomic.Pointer[globals]
	observer Observer
	links    *linkCache
	seen     *seenCache   // the shared store's last answer per thread (outage.go)
	nodes    atomic.Int64 // nodes sharing the store, from its heartbeat (outage.go)
	Stats    Stats
}

// SetObserver installs o; call it before serving.
func (f *Filter) SetObserver(o Observer) { f.observer = o }

// Mode is the site mode in force (config, overridden by stormguard:mode).
func (f *Filter) Mode() policy.Mode { return f.globals.Load().site.Mode }

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
		links: newLinkCache(linkCacheTTL, linkCacheMax), seen: newSeenCache(cfg.Policy.Limits.Window, seenMax)}
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
	Trusted  bool   // AuthUser is set or the client's address is in TrustedNetworks
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
	// for the history (history.Recorder).
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
const MaxLists = policy.MaxLists

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

// decide carries the message through policy's two steps (policy.Site.Plan,
// policy.Plan.Decide) with the store calls in between, and falls back on
// this node's memory store when the shared one fails (store.on_error).
func (f *Filter) decide(ctx context.Context, m *Message) Decision {
	g := f.globals.Load()
	// The configuration this message is decided by, to the end, even if
	// a reload swaps in another meanwhile.
	c := g.cfg
	p := g.site.Plan(policy.Envelope{Sender: m.Sender, Rcpts: m.Rcpts, AuthUser: m.AuthUser, Trusted: m.Trusted}, &m.Headers)
	d := Decision{Audience: p.Facts.Audience, Subject: p.Subject, conf: c}
	if !p.Store {
		d.Verdict, d.List = p.Verdict, p.List
		f.Stats.StoreSkipped.Add(1)
		return d
	}
	d.Stored, d.Kind, d.Lists, d.Limits = true, p.Kind, p.Lists, p.Config.Limits
	start := time.Now()
	tally, thread, source, err := f.record(ctx, c, f.store, m, &p, c.StoreTimeout, false)
	if left := c.StoreBudget - time.Since(start); err != nil && left >= c.StoreTimeout/2 && ctx.Err() == nil {
		// Safe to repeat: had the first call counted the message, the
		// store knows it again (policy.StatusDuplicate) and counts it once.
		f.Stats.StoreRetries.Add(1)
		tally, thread, source, err = f.record(ctx, c, f.store, m, &p, min(c.StoreTimeout, left), false)
	}
	var unreplicated *store.NotReplicatedError
	switch {
	case err == nil:
		f.seen.put(thread, policy.Seen{At: f.now(), Tally: tally})
	case errors.As(err, &unreplicated):
		// The master's answer, which a failover could lose: the
		// fallback counts on from it.
		f.seen.put(thread, policy.Seen{At: f.now(), Tally: unreplicated.Tally})
	}
	if err != nil {
		f.Stats.StoreErrors.Add(1)
		switch {
		case c.OnError == OnErrorTempfail:
			f.warnStore(err, "tempfail")
			d.Verdict = p.Decide(policy.Answer{Failed: policy.FailTempfail})
			d.Thread = thread
			return d
		case f.fallback == nil: // the memory store itself failed (a deadline): nothing to count in
			f.warnStore(err, "accept")
		default:
			f.warnStore(err, "accept, counting on this node its share of what each thread had left")
			f.Stats.Fallbacks.Add(1)
			d.Fallback = true
			tally, thread, source, err = f.record(ctx, c, f.fallback, m, &p, c.StoreTimeout, true)
		}
		if err != nil { // nothing counted it (no fallback, or its deadline passed too): fail open
			d.Verdict = p.Decide(policy.Answer{Failed: policy.FailOpen})
			d.Thread = thread
			return d
		}
	}
	d.Verdict = p.Decide(policy.Answer{Tally: tally})
	d.Thread = thread
	d.Count = tally.Count
	d.Delivered = tally.Delivered
	d.Source = source
	return d
}

// record resolves the thread and makes the one atomic store call, as the
// plan p says.
//
// A reply first resolves its identities (policy.Identity.Lookup: its
// ancestors' ids, its Thread-Index GUID, its subject key) through the
// node's link cache, else in one Resolve call, a single round trip; then
// it is recorded in the thread policy.Resolve picks, as p.Kind, under
// p.Config.Limits. Originals look nothing up. Each call has timeout.
//
// With outage (st is this node's fallback while the shared store is out
// of reach), a reply is counted under this node's share of what its
// thread had left when the shared store last answered for it
// (policy.OutageLimits), or answered from that without counting.
func (f *Filter) record(ctx context.Context, c *Config, st store.Store, m *Message, p *policy.Plan, timeout time.Duration, outage bool) (policy.Tally, policy.ThreadID, policy.Source, error) {
	id := &p.Identity
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
				thread, _ := policy.Resolve(*id, nil)
				return policy.Tally{}, thread, "", err
			}
			f.links.put(id.Lookup, found, f.now())
		}
	}
	thread, source := policy.Resolve(*id, found)
	if thread == "" { // no message-id and nothing to thread on: a one-off thread
		thread = randomThread()
	}
	rec := store.Record{
		Thread:    thread,
		Message:   id.Own,
		Kind:      p.Kind,
		Audience:  p.Facts.Audience,
		Sender:    m.Sender,
		Subject:   id.Display,
		Now:       f.now(),
		Limits:    p.Config.Limits, // the message's: its lists' strictest (policy.Effective)
		Links:     id.Links,
		Retention: c.Retention,
	}
	if outage && p.Kind == policy.KindReply {
		share, answer, ok := policy.OutageLimits(rec.Limits, f.seen.get(thread), f.Nodes(), rec.Now)
		if !ok {
			answer.Thread = thread
			return answer, thread, source, nil
		}
		rec.Limits = share
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

func randomThread() policy.ThreadID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return policy.ThreadID(hex.EncodeToString(b[:]))
}
