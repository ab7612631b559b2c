package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// Config is a notifier's outlets and queue.
type Config struct {
	// Queue is how many events may wait, in the notifier and in each
	// outlet; when full, new events are dropped and counted.
	Queue int
	// WebhookURL, if set, is an http(s) URL every event is POSTed to as
	// JSON; a failed POST is retried 3 times with backoff.
	WebhookURL string
	// WebhookTimeout is the deadline of one webhook POST.
	WebhookTimeout time.Duration
	// UserAgent is sent with every webhook POST.
	UserAgent string
	// Publish, if set, publishes one JSON event (Redis PUBLISH); nil: the
	// event is logged instead.
	Publish func(ctx context.Context, msg string) error
	// PublishTimeout is the deadline of one Publish, and of one Origin
	// lookup.
	PublishTimeout time.Duration
	// Node names this node in events that do not name one (config node);
	// "": the host name.
	Node string
	// Origins, if set, completes storm events with what the hot path did
	// not know (the thread's original sender, its first subject), on the
	// dispatcher, off the mail path.
	Origins Origins
	// Mail, with addresses in Mail.To, mails storm notices (mail.go).
	Mail MailConfig
}

// Origins tells who started a thread and what its subject was (the store's
// record of the thread; cmd/stormguard wires it).
type Origins interface {
	Origin(ctx context.Context, t policy.ThreadID) (sender, subject string, err error)
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Queue < 1 {
		return fmt.Errorf("events: queue must be at least 1, got %d", c.Queue)
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("events: webhook URL %q is not an http(s) URL", c.WebhookURL)
		}
		if c.WebhookTimeout <= 0 {
			return fmt.Errorf("events: webhook timeout must be positive, got %s", c.WebhookTimeout)
		}
	}
	if err := c.Mail.Validate(); err != nil {
		return err
	}
	if (c.Publish != nil || c.Origins != nil) && c.PublishTimeout <= 0 {
		return errors.New("events: publish timeout must be positive")
	}
	return nil
}

// outlet is one destination of events with its own bounded queue and
// worker, so that a slow webhook never holds up Redis, and neither ever
// holds up mail.
type outlet struct {
	name     string
	ch       chan Event
	accept   func(Event) bool // nil: every event
	mail     *mailer          // the mail outlet's state; nil for the others
	send     func(ctx context.Context, e Event) error
	attempts int           // tries per event
	backoff  time.Duration // before the second try; doubles after each
	sent     atomic.Uint64
	failed   atomic.Uint64 // events given up after every try
	dropped  atomic.Uint64 // events refused because the queue was full
	limited  atomic.Uint64 // mail: notices over notify.max_per_hour
	dupes    atomic.Uint64 // mail: notices not sent, the thread had one already
	done     chan struct{}
}

// Notifier fans events out to its outlets. Emit never blocks.
type Notifier struct {
	node    string // Config.Node, or the host name
	log     *slog.Logger
	outlets []*outlet
	origins Origins
	timeout time.Duration // of one Origin lookup
	in      chan Event
	inDrop  atomic.Uint64

	base   context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// mu orders Emit's send before Close's close(in): Emit holds it for
	// reading from its check of closed to its send, Close for writing.
	mu     sync.RWMutex
	closed bool

	lastWarn atomic.Int64
}

// NewNotifier starts a notifier with c's outlets: Redis (c.Publish) or the
// log, and the webhook if c.WebhookURL is set. Close stops it.
func NewNotifier(c Config, log *slog.Logger) (*Notifier, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{node: c.Node, log: log, origins: c.Origins, timeout: c.PublishTimeout, in: make(chan Event, c.Queue), done: make(chan struct{})}
	if n.node == "" {
		n.node = hostname()
	}
	n.base, n.cancel = context.WithCancel(context.Background())
	if c.Publish != nil {
		n.outlets = append(n.outlets, publishOutlet(c.Publish, c.PublishTimeout))
	} else {
		n.outlets = append(n.outlets, logOutlet(log))
	}
	if c.WebhookURL != "" {
		n.outlets = append(n.outlets, webhookOutlet(c.WebhookURL, c.WebhookTimeout, c.UserAgent))
	}
	if len(c.Mail.To) > 0 {
		n.outlets = append(n.outlets, mailOutlet(c.Mail, n.node, n.log.Warn))
	}
	for _, o := range n.outlets {
		o.ch = make(chan Event, c.Queue)
		o.done = make(chan struct{})
		go n.work(o)
	}
	go n.dispatch()
	return n, nil
}

// Emit queues e for every outlet; when the queue is full, e is dropped and
// counted. It never waits for delivery or for room in a queue, and does
// nothing after Close (or while Close runs: an Emit racing Close either
// gets in before the queue closes or is dropped, never a panic).
func (n *Notifier) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Node == "" {
		e.Node = n.node
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return
	}
	select {
	case n.in <- e:
	default:
		n.inDrop.Add(1)
		n.warn("event queue full: event dropped", "type", e.Type, "thread", e.Thread)
	}
}

func (n *Notifier) dispatch() {
	defer close(n.done)
	for e := range n.in {
		n.enrich(&e)
		e.fillText()
		for _, o := range n.outlets {
			if o.accept != nil && !o.accept(e) {
				continue
			}
			select {
			case o.ch <- e:
			default:
				o.dropped.Add(1)
				n.warn("event queue full: event dropped", "outlet", o.name, "type", e.Type, "thread", e.Thread)
			}
		}
	}
	for _, o := range n.outlets {
		close(o.ch)
	}
}

// enrich completes a storm event decided on the shared store with its
// thread's original sender and subject; a failed lookup leaves it as is.
func (n *Notifier) enrich(e *Event) {
	if n.origins == nil || e.Type != TypeStorm || e.Thread == "" || e.Fallback {
		return
	}
	ctx, cancel := context.WithTimeout(n.base, n.timeout)
	defer cancel()
	sender, subject, err := n.origins.Origin(ctx, policy.ThreadID(e.Thread))
	if err != nil {
		return
	}
	e.OriginalSender = sender
	if subject != "" {
		e.Subject = subject
	}
}

func (n *Notifier) work(o *outlet) {
	defer close(o.done)
	for e := range o.ch {
		var err error
		wait := o.backoff
		for try := 1; try <= o.attempts; try++ {
			if err = o.send(n.base, e); err == nil || n.base.Err() != nil {
				break
			}
			if try < o.attempts {
				select {
				case <-time.After(wait):
				case <-n.base.Done():
				}
				wait *= 2
			}
		}
		switch {
		case errors.Is(err, errLimited):
			o.limited.Add(1)
			continue
		case errors.Is(err, errSkipped):
			o.dupes.Add(1)
			continue
		case err != nil:
			o.failed.Add(1)
			n.warn("event not delivered", "outlet", o.name, "type", e.Type, "thread", e.Thread, "err", err)
			continue
		}
		o.sent.Add(1)
	}
}

// warn logs at most once every 10 seconds.
func (n *Notifier) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := n.lastWarn.Load()
	if now-last < int64(10*time.Second) || !n.lastWarn.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn(msg, args...)
}

// Close stops taking events, delivers what is queued until ctx ends, then
// abandons the rest. It reports whether everything queued was handled.
func (n *Notifier) Close(ctx context.Context) bool {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return true
	}
	n.closed = true
	close(n.in)
	n.mu.Unlock()
	defer n.cancel()
	for _, ch := range append([]chan struct{}{n.done}, n.doneOutlets()...) {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (n *Notifier) doneOutlets() []chan struct{} {
	out := make([]chan struct{}, len(n.outlets))
	for i, o := range n.outlets {
		out[i] = o.done
	}
	return out
}

// Stats are a notifier's counters so far.
type Stats struct {
	Dropped uint64 // events refused because the notifier's own queue was full
	Outlets []OutletStats
}

// OutletStats are one outlet's counters.
type OutletStats struct {
	Name      string // redis, log, webhook or mail
	Sent      uint64
	Failed    uint64 // given up after every try
	Dropped   uint64 // refused because the outlet's queue was full
	Limited   uint64 // mail: dropped over notify.max_per_hour
	Duplicate uint64 // mail: not sent, the thread had its notice (on this node or another)
}

// Stats reads the counters; the caller exports them (metrics) or checks
// them (a command that must know its event went out).
func (n *Notifier) Stats() Stats {
	s := Stats{Dropped: n.inDrop.Load(), Outlets: make([]OutletStats, len(n.outlets))}
	for i, o := range n.outlets {
		s.Outlets[i] = OutletStats{Name: o.name, Sent: o.sent.Load(), Failed: o.failed.Load(), Dropped: o.dropped.Load(),
			Limited: o.limited.Load(), Duplicate: o.dupes.Load()}
	}
	return s
}
