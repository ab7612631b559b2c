package main

// The parts of a simulation run: the storm's messages, the simulated
// clock, the mail nodes (a real milter.Filter and milter.Server each,
// driven by go-milter's client), and the stores (a fresh memory store, or the configured Redis under a
// private prefix that is deleted afterwards).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// simStoreTimeout is the least deadline of a store call in a simulation:
// it is not the mail path, and a slow call must not turn into a fallback
// that would falsify the counts.
const simStoreTimeout = 2 * time.Second

// simClock is the time every node of a scenario reads. It starts at the
// real time (so Redis' own TTLs and the memory store's wall-clock lookups
// agree with it) and moves only when the driver sets it.
type simClock struct {
	epoch time.Time
	off   atomic.Int64 // time.Duration since epoch
}

func newSimClock() *simClock { return &simClock{epoch: time.Now().Truncate(time.Millisecond)} }

func (c *simClock) set(d time.Duration) { c.off.Store(int64(d)) }

func (c *simClock) now() time.Time { return c.epoch.Add(time.Duration(c.off.Load())) }

// simObserver keeps the rule of the last decision and the first store
// failure. The nodes call it on their connections' goroutines; the driver
// reads it after each answer.
type simObserver struct {
	mu   sync.Mutex
	rule policy.Rule
	err  error
}

func (o *simObserver) Decided(d milter.Decision, _ *milter.Message) {
	o.mu.Lock()
	o.rule = d.Rule
	o.mu.Unlock()
}

func (o *simObserver) StoreCall(op string, _ time.Duration, err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	if o.err == nil {
		o.err = fmt.Errorf("the store failed, so the counts would be wrong (%s): %s", op, admin.OneLine(err))
	}
	o.mu.Unlock()
}

func (o *simObserver) lastRule() policy.Rule {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rule
}

func (o *simObserver) failure() error {
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
)

// simMessage is one message of the storm as the MTA hands it over.
type simMessage struct {
	at      time.Duration
	from    string
	rcpts   []string
	headers [][2]string
}

// stormMessages is the original at 0, then one reply-all per arrival time.
func stormMessages(at []time.Duration) []simMessage {
	const rootID = "storm-original@" + simDomain
	msgs := []simMessage{{from: simBoss, rcpts: []string{simList}, headers: [][2]string{
		{"From", " Boss <" + simBoss + ">"},
		{"To", " All staff <" + simList + ">"},
		{"Subject", " " + simSubject},
		{"Message-ID", " <" + rootID + ">"},
	}}}
	for i, t := range at {
		from := fmt.Sprintf("replier-%d@%s", i+1, simDomain)
		msgs = append(msgs, simMessage{at: t, from: from, rcpts: []string{simList, simBoss}, headers: [][2]string{
			{"From", " <" + from + ">"},
			{"To", " " + simList + ", " + simBoss},
			{"Subject", " RE: " + simSubject},
			{"Message-ID", fmt.Sprintf(" <storm-reply-%d@%s>", i+1, simDomain)},
			{"In-Reply-To", " <" + rootID + ">"},
			{"References", " <" + rootID + ">"},
		}})
	}
	return msgs
}

// errSim marks answers a simulated node should never give.
var errSim = errors.New("unexpected milter answer")

// simNode is one mail node: the daemon's filter and milter server on a
// loopback port, and one MTA connection to it.
type simNode struct {
	srv    *milter.Server
	done   chan error
	sess   *gomilter.ClientSession
	macros *gomilter.MacroBag
}

// startSimNode starts node i (mx<i+1>) over st; its filter reads the time from now.
func startSimNode(ctx context.Context, i int, fc milter.Config, st store.Store, now func() time.Time, obs milter.Observer, log *slog.Logger) (*simNode, error) {
	f, err := milter.NewFilter(fc, st, nil, log.With("node", i+1), now)
	if err != nil {
		return nil, err
	}
	f.SetObserver(obs)
	if err := f.RefreshGlobals(ctx); err != nil {
		return nil, fmt.Errorf("node %d: read the list sizes from the store: %s", i+1, admin.OneLine(err))
	}
	ln, err := milter.Listen("inet:127.0.0.1:0", 0)
	if err != nil {
		return nil, err
	}
	n := &simNode{srv: milter.NewServer(f), done: make(chan error, 1), macros: gomilter.NewMacroBag()}
	go func() { n.done <- n.srv.Serve(ln) }()
	n.macros.Set(gomilter.MacroMTAFQDN, fmt.Sprintf("mx%d.%s", i+1, simDomain))
	n.macros.Set(gomilter.MacroDaemonName, "smtpd")
	sess, err := gomilter.NewClient("tcp", ln.Addr().String()).Session(n.macros)
	if err == nil {
		n.sess = sess
		if _, err = sess.Conn("client."+simDomain, gomilter.FamilyInet, 25000, "192.0.2.1"); err == nil {
			_, err = sess.Helo("client." + simDomain)
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
func (n *simNode) stop() error {
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
func (n *simNode) send(m simMessage, queueID, header string) (verdict, error) {
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
		return "", fmt.Errorf("%w at end of headers: %v", errSim, act.Type)
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader("")) // no body goes out: stormguard asks for none
	if err != nil {
		return "", fmt.Errorf("end of message: %w", err)
	}
	if act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
		return "", fmt.Errorf("%w at end of message: %v", errSim, act.Type)
	}
	for _, mod := range mods {
		if mod.Type == gomilter.ActionAddHeader && strings.EqualFold(mod.HeaderName, header) {
			return verdictTagged, nil
		}
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
		return fmt.Errorf("%w at %s: %v", errSim, stage, act.Type)
	}
	return nil
}

// simStores hands out one fresh store per scenario, all of one backend.
type simStores struct {
	cfg      *Config
	client   redis.UniversalClient // nil: the memory store
	prefixes []string              // the private prefixes handed out
}

func newSimStores(ctx context.Context, cfg *Config) (*simStores, error) {
	s := &simStores{cfg: cfg}
	if cfg.Store.Backend != "redis" {
		return s, nil
	}
	rc := cfg.redisConfig()
	rc.Timeout = max(rc.Timeout, simStoreTimeout) // the daemon's client, with the longer deadline
	client, err := store.NewRedisClient(rc)
	if err != nil {
		return nil, err
	}
	s.client = client
	pctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	if err := s.client.Ping(pctx).Err(); err != nil {
		s.client.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s: %s", strings.Join(cfg.Redis.Addrs, ","), admin.OneLine(err))
	}
	return s, nil
}

// fresh returns an empty store with the storm's list registered: a new
// memory store, or Redis under a new private prefix (the configured prefix
// + "sim:" + 16 random hex digits + ":"), so the site's own storm state,
// lists and mode are never read or touched.
func (s *simStores) fresh(ctx context.Context, audience int) (store.Store, error) {
	var st interface {
		store.Store
		store.Admin
	}
	if s.client == nil {
		st = store.NewMemory()
	} else {
		base := s.cfg.Redis.Prefix
		if base == "" {
			base = store.DefaultPrefix
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		prefix := base + "sim:" + hex.EncodeToString(b[:]) + ":"
		s.prefixes = append(s.prefixes, prefix)
		st = store.NewRedis(s.client, prefix) // not closed: the client is shared, closed by close
	}
	ctx, cancel := context.WithTimeout(ctx, simStoreTimeout)
	defer cancel()
	if err := st.SetList(ctx, simList, audience); err != nil {
		return nil, fmt.Errorf("register the list: %s", admin.OneLine(err))
	}
	return st, nil
}

// close deletes every key under the private prefixes and says what it did.
func (s *simStores) close(ctx context.Context) (cleanup string, prefixes []string) {
	if s.client == nil {
		return "", nil
	}
	defer s.client.Close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
	defer cancel()
	deleted := 0
	var scanErr error
	for _, p := range s.prefixes {
		n, err := dropKeys(ctx, s.client, p)
		deleted += n
		if err == nil {
			continue
		}
		scanErr = err
		for _, k := range []string{p + "lists", p + "threads"} { // the keys without a TTL
			if m, err := s.client.Del(ctx, k).Result(); err == nil {
				deleted += int(m)
			}
		}
	}
	if scanErr != nil {
		return fmt.Sprintf("deleted %d keys, but could not SCAN for the others (%s): they expire by themselves within %s (store.retention)",
			deleted, admin.OneLine(scanErr), s.cfg.Store.Retention), s.prefixes
	}
	return fmt.Sprintf("deleted the %d keys the simulation wrote", deleted), s.prefixes
}

// dropKeys deletes the keys under prefix: SCAN on every master, then DEL
// one key at a time (in a Cluster they live in different slots).
func dropKeys(ctx context.Context, c redis.UniversalClient, prefix string) (int, error) {
	pattern := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(prefix) + "*"
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, n redis.Cmdable) error {
		it := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(ctx, c)
	}
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Del(ctx, k)
	}
	_, err = pipe.Exec(ctx)
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, err
}
