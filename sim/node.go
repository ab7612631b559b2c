package sim

// The parts of a scenario: the storm's messages, the simulated clock, the
// observer that watches the filters' decisions and store calls, and the
// mail nodes (a real milter.Filter and milter.Server each, driven by
// go-milter's client).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// The storm's addresses: a reserved domain, so no config's exempt senders
// or list sizes match them by accident.
const (
	domain  = "simulate.invalid"
	list    = "all-staff@" + domain
	boss    = "boss@" + domain
	subject = "Test message, please ignore"
)

// storeTimeout is the least deadline of a store call in a simulation: it
// is not the mail path, and a slow call must not turn into a fallback that
// would falsify the counts.
const storeTimeout = 2 * time.Second

// clock is the time every node of a scenario reads. It starts at the real
// time (so Redis' own TTLs and the memory store's wall-clock lookups agree
// with it) and moves only when the driver sets it.
type clock struct {
	epoch time.Time
	off   atomic.Int64 // time.Duration since epoch
}

func newClock() *clock { return &clock{epoch: time.Now().Truncate(time.Millisecond)} }

func (c *clock) set(d time.Duration) { c.off.Store(int64(d)) }

func (c *clock) now() time.Time { return c.epoch.Add(time.Duration(c.off.Load())) }

// observer keeps the rule and thread of the last decision and the first
// store failure. The nodes call it on their connections' goroutines; the driver
// reads it after each answer.
type observer struct {
	mu     sync.Mutex
	rule   policy.Rule
	thread policy.ThreadID
	err    error
}

func (o *observer) Decided(d milter.Decision, _ *milter.Message) {
	o.mu.Lock()
	o.rule, o.thread = d.Rule, d.Thread
	o.mu.Unlock()
}

func (o *observer) StoreCall(op string, _ time.Duration, err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	if o.err == nil {
		o.err = fmt.Errorf("the store failed, so the counts would be wrong (%s): %s", op, text.OneLine(err))
	}
	o.mu.Unlock()
}

func (o *observer) lastRule() policy.Rule {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rule
}

func (o *observer) lastThread() policy.ThreadID {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.thread
}

func (o *observer) failure() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// verdict is what the MTA was told about one message.
type verdict string

const (
	verdictAccepted   verdict = "accepted"
	verdictTagged     verdict = "tagged" // accepted with the monitor header
	verdictRejected   verdict = "rejected"
	verdictTempfailed verdict = "tempfailed"
	verdictHeld       verdict = "held" // quarantined (the sender gate's hold): not delivered until released
)

// message is one message of the storm as the MTA hands it over.
type message struct {
	at      time.Duration
	from    string
	rcpts   []string
	headers [][2]string
	mail    Mail // the client's headers, what a reply to it reads; nil for the plain replies
}

// stormMessages is the original at 0, then one reply-all per arrival time.
func stormMessages(at []time.Duration) []message {
	const rootID = "storm-original@" + domain
	msgs := []message{{from: boss, rcpts: []string{list}, headers: [][2]string{
		{"From", " Boss <" + boss + ">"},
		{"To", " All staff <" + list + ">"},
		{"Subject", " " + subject},
		{"Message-ID", " <" + rootID + ">"},
	}}}
	for i, t := range at {
		from := fmt.Sprintf("replier-%d@%s", i+1, domain)
		msgs = append(msgs, message{at: t, from: from, rcpts: []string{list, boss}, headers: [][2]string{
			{"From", " <" + from + ">"},
			{"To", " " + list + ", " + boss},
			{"Subject", " RE: " + subject},
			{"Message-ID", fmt.Sprintf(" <storm-reply-%d@%s>", i+1, domain)},
			{"In-Reply-To", " <" + rootID + ">"},
			{"References", " <" + rootID + ">"},
		}})
	}
	return msgs
}

// errUnexpected marks answers a simulated node should never give.
var errUnexpected = errors.New("sim: unexpected milter answer")

// node is one mail node: the daemon's filter and milter server on a
// loopback port, and one MTA connection to it.
type node struct {
	srv    *milter.Server
	done   chan error
	sess   *gomilter.ClientSession
	macros *gomilter.MacroBag
}

// startNode starts node i (mx<i+1>) over st; its filter reads the time from now.
func startNode(ctx context.Context, i int, fc milter.Config, st store.Store, now func() time.Time, obs milter.Observer, log *slog.Logger) (*node, error) {
	f, err := milter.NewFilter(fc, st, nil, log.With("node", i+1), now)
	if err != nil {
		return nil, err
	}
	f.SetObserver(obs)
	if err := f.RefreshGlobals(ctx); err != nil {
		return nil, fmt.Errorf("node %d: read the list sizes from the store: %s", i+1, text.OneLine(err))
	}
	ln, err := milter.Listen("inet:127.0.0.1:0", 0)
	if err != nil {
		return nil, err
	}
	n := &node{srv: milter.NewServer(f), done: make(chan error, 1), macros: gomilter.NewMacroBag()}
	go func() { n.done <- n.srv.Serve(ln) }()
	n.macros.Set(gomilter.MacroMTAFQDN, fmt.Sprintf("mx%d.%s", i+1, domain))
	n.macros.Set(gomilter.MacroDaemonName, "smtpd")
	sess, err := gomilter.NewClient("tcp", ln.Addr().String()).Session(n.macros)
	if err == nil {
		n.sess = sess
		if _, err = sess.Conn("client."+domain, gomilter.FamilyInet, 25000, "192.0.2.1"); err == nil {
			_, err = sess.Helo("client." + domain)
		}
	}
	if err != nil {
		_ = n.stop()
		return nil, fmt.Errorf("node %d: milter session: %w", i+1, err)
	}
	return n, nil
}

// stop closes the MTA connection and shuts the server down, forcing it
// after 5 seconds.
func (n *node) stop() error {
	if n.sess != nil {
		_ = n.sess.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.srv.Shutdown(ctx)
	return errors.Join(err, <-n.done)
}

// send hands one message to the milter as Postfix does: MAIL, RCPTs, DATA,
// headers, end of headers (where stormguard decides), and end of message
// when it has not decided yet (monitor mode adds its header there).
func (n *node) send(m message, queueID, header string) (verdict, error) {
	n.macros.Set(gomilter.MacroQueueId, queueID)
	s := n.sess
	act, err := s.Mail(m.from, "")
	if err = early(act, err, "MAIL"); err != nil {
		return "", err
	}
	for _, r := range m.rcpts {
		act, err = s.Rcpt(r, "")
		if err = early(act, err, "RCPT"); err != nil {
			return "", err
		}
	}
	act, err = s.DataStart()
	if err = early(act, err, "DATA"); err != nil {
		return "", err
	}
	for _, h := range m.headers {
		act, err = s.HeaderField(h[0], h[1], nil)
		if err = early(act, err, "header "+h[0]); err != nil {
			return "", err
		}
	}
	act, err = s.HeaderEnd()
	if err != nil {
		return "", fmt.Errorf("end of headers: %w", err)
	}
	switch act.Type {
	case gomilter.ActionAccept:
		return verdictAccepted, s.Abort(nil)
	case gomilter.ActionTempFail:
		return verdictTempfailed, s.Abort(nil)
	case gomilter.ActionReject, gomilter.ActionRejectWithCode:
		if act.SMTPCode/100 == 4 {
			return verdictTempfailed, s.Abort(nil)
		}
		return verdictRejected, s.Abort(nil)
	case gomilter.ActionContinue:
	default:
		return "", fmt.Errorf("%w at end of headers: %v", errUnexpected, act.Type)
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader("")) // no body goes out: stormguard asks for none
	if err != nil {
		return "", fmt.Errorf("end of message: %w", err)
	}
	if act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
		return "", fmt.Errorf("%w at end of message: %v", errUnexpected, act.Type)
	}
	tagged := false
	for _, mod := range mods {
		switch {
		case mod.Type == gomilter.ActionQuarantine:
			return verdictHeld, nil
		case mod.Type == gomilter.ActionAddHeader && strings.EqualFold(mod.HeaderName, header):
			tagged = true
		}
	}
	if tagged {
		return verdictTagged, nil
	}
	return verdictAccepted, nil
}

// early checks an answer before end of headers: stormguard always
// continues there.
func early(act *gomilter.Action, err error, stage string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", stage, err)
	}
	if act.Type != gomilter.ActionContinue {
		return fmt.Errorf("%w at %s: %v", errUnexpected, stage, act.Type)
	}
	return nil
}
