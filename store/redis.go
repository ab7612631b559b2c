package store

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/stormguard/stormguard/policy"
)

// DefaultTimeout bounds every Redis call when RedisConfig.Timeout is 0.
const DefaultTimeout = 200 * time.Millisecond

// RedisConfig is how to reach the site's Redis: one server, a Sentinel
// group (MasterName) or a Cluster.
type RedisConfig struct {
	Addrs      []string // host:port; Sentinel addresses with MasterName; any cluster nodes with Cluster
	Username   string
	Password   string
	DB         int
	MasterName string // Sentinel master name
	Cluster    bool
	TLS        *tls.Config   // nil: plain TCP
	Timeout    time.Duration // dial, read and write timeout; 0: DefaultTimeout
	Prefix     string        // key prefix; "": DefaultPrefix
}

// Validate reports what is wrong with c, if anything.
func (c RedisConfig) Validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("no address"))
	}
	for _, a := range c.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("address %q: want host:port", a))
		}
	}
	if len(c.Addrs) > 1 && !c.Cluster && c.MasterName == "" {
		errs = append(errs, errors.New("several addresses need cluster or master_name"))
	}
	if c.Cluster && c.MasterName != "" {
		errs = append(errs, errors.New("cluster and master_name exclude each other"))
	}
	if c.DB < 0 || c.Cluster && c.DB != 0 {
		errs = append(errs, fmt.Errorf("db %d: want >= 0, and 0 with cluster", c.DB))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: want >= 0", c.Timeout))
	}
	if err := checkPrefix(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: redis config: %w", err)
	}
	return nil
}

func checkPrefix(p string) error {
	if strings.ContainsAny(p, "{} \t\r\n") {
		return fmt.Errorf("prefix %q: no braces or spaces (they would break the Cluster hash tags)", p)
	}
	return nil
}

// Redis is the store shared by all nodes of a site. Record is one round
// trip: record.lua (atomic, in the thread's slot) pipelined with the link
// writes.
type Redis struct {
	client redis.UniversalClient
	keys   Keys
}

var (
	_ Store = (*Redis)(nil)
	_ Admin = (*Redis)(nil)
)

//go:embed record.lua
var recordLua string

var recordScript = redis.NewScript(recordLua)

// OpenRedis connects to the Redis c describes. It does not wait for Redis
// to answer: a store that cannot reach Redis fails its calls (fast) and
// recovers by itself when Redis is back.
func OpenRedis(c RedisConfig) (*Redis, error) {
	client, err := NewRedisClient(c)
	if err != nil {
		return nil, err
	}
	return NewRedis(client, c.Prefix), nil
}

// NewRedisClient makes the client OpenRedis uses (standalone, Sentinel or
// Cluster, as c says), for callers that share one client between several
// stores (NewRedis). It does not wait for Redis to answer.
func NewRedisClient(c RedisConfig) (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		// A copy: the Cluster client appends the nodes it discovers to
		// its Addrs, which must not write into the caller's slice.
		Addrs:                 slices.Clone(c.Addrs),
		Username:              c.Username,
		Password:              c.Password,
		DB:                    c.DB,
		MasterName:            c.MasterName,
		IsClusterMode:         c.Cluster,
		TLSConfig:             c.TLS,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true, // honour the caller's deadline too
		// No retries (go-redis reads 0 as its default of 3): fail fast,
		// and let the daemon fall back. Dead pooled connections (Redis
		// restarted) are dropped by the pool before use, so the next call
		// after Redis is back succeeds without one. Worst case without a
		// context deadline: about twice Timeout (handshake, command).
		MaxRetries: -1,
		// One dial attempt per call (go-redis reads 0 as 5 attempts with
		// 100ms pauses): a refused dial fails the call at once.
		DialerRetries: 1,
		// Connect with HELLO (and AUTH) only: no CLIENT SETINFO (a round
		// trip per connection, and a command the ACL would have to allow,
		// unknown before Redis 7.2) and no maintenance-notification
		// handshake (a Redis Enterprise feature).
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return client, nil
}

// NewRedis returns a store over an existing client (standalone, Sentinel or
// Cluster). prefix "" means DefaultPrefix; it must not contain braces.
// Close closes the client.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, keys: NewKeys(prefix)}
}

// Keys are the names of the store's keys (store/keys.go).
func (s *Redis) Keys() Keys { return s.keys }

// Record implements Store.
func (s *Redis) Record(ctx context.Context, r Record) (policy.Tally, error) {
	tally, err := s.record(ctx, r)
	if err != nil {
		return policy.Tally{}, fmt.Errorf("store: record thread %s: %w", r.Thread, err)
	}
	return tally, nil
}

// statusRedirect is record.lua's answer when Follow led elsewhere; it
// never leaves the store.
const statusRedirect policy.Status = "redirect"

func (s *Redis) record(ctx context.Context, r Record) (policy.Tally, error) {
	if err := r.check(); err != nil {
		return policy.Tally{}, err
	}
	tally, redirect, err := s.recordOnce(ctx, r, r.Follow)
	if err != nil || redirect == "" {
		return tally, err
	}
	// The root was recorded in another thread: record the message there.
	// The first round wrote this message's links with the root's thread
	// (a References reply writes no alias); this one overwrites them.
	if err := checkID("redirect thread", string(redirect)); err != nil {
		return policy.Tally{}, fmt.Errorf("%s: %w", s.keys.Alias(r.Thread), err)
	}
	r.Thread = redirect
	tally, _, err = s.recordOnce(ctx, r, false)
	if err != nil && len(r.Links) > 0 {
		// The links the first round wrote lead to the root's thread,
		// which has no state of its own. They could not wait for the
		// redirect: a References reply is one round trip, and on a
		// Cluster its links live in other slots than the script. Lead
		// them where the root was recorded, with a deadline of their
		// own (ctx may be what ran out).
		if lerr := s.relink(ctx, r); lerr != nil {
			err = errors.Join(err, fmt.Errorf("relink after a failed redirect: %w", lerr))
		}
	}
	return tally, err
}

// relink writes r's links to r.Thread, in one pipeline bounded by
// DefaultTimeout whatever is left of ctx.
func (s *Redis) relink(ctx context.Context, r Record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultTimeout)
	defer cancel()
	pipe := s.client.Pipeline()
	s.queueLinks(ctx, pipe, r)
	_, err := pipe.Exec(ctx)
	return err
}

// queueLinks queues the writes of r's links to r.Thread and, when it has
// one (aliasOf), its alias.
func (s *Redis) queueLinks(ctx context.Context, pipe redis.Pipeliner, r Record) []*redis.StatusCmd {
	cmds := make([]*redis.StatusCmd, 0, len(r.Links)+1)
	for _, k := range r.Links {
		cmds = append(cmds, pipe.Set(ctx, s.keys.Link(k), string(r.Thread), r.Retention))
	}
	if own := r.aliasOf(); own != "" {
		// So that a later reply whose References start with this
		// message's id finds r.Thread (Follow) without a lookup.
		cmds = append(cmds, pipe.Set(ctx, s.keys.Alias(own), string(r.Thread), r.Retention))
	}
	return cmds
}

// Indexes into record.lua's ARGV (ARGV[i+1]) before the limits, which
// follow in policy.LimitRules order. recordArgNames names them as the
// script's contract header does; store/script_test.go compares the two.
const (
	argKind = iota
	argNow
	argMsg
	argMember
	argAudience
	argSender
	argSubject
	argWindow
	argBlockFor
	argRetention
	argFollow
	argLimits // the first limit
)

var recordArgNames = [argLimits]string{
	argKind:      "kind",
	argNow:       "now",
	argMsg:       "msg",
	argMember:    "member",
	argAudience:  "audience",
	argSender:    "sender",
	argSubject:   "subject",
	argWindow:    "window",
	argBlockFor:  "block_for",
	argRetention: "retention",
	argFollow:    "follow",
}

// recordArgs is record.lua's ARGV for r: the arguments recordArgNames
// names, then each policy.LimitRules limit.
func recordArgs(r Record, follow bool) []any {
	msg, member := r.member()
	args := make([]any, argLimits+len(policy.LimitRules))
	args[argKind] = string(r.Kind)
	args[argNow] = strconv.FormatInt(r.Now.UnixMilli(), 10)
	args[argMsg] = msg
	args[argMember] = member
	args[argAudience] = strconv.Itoa(r.Audience)
	args[argSender] = r.Sender
	args[argSubject] = r.Subject
	args[argWindow] = strconv.FormatInt(r.Limits.Window.Milliseconds(), 10)
	args[argBlockFor] = strconv.FormatInt(r.Limits.BlockFor.Milliseconds(), 10)
	args[argRetention] = strconv.FormatInt(r.Retention.Milliseconds(), 10)
	args[argFollow] = ""
	if follow {
		args[argFollow] = "1"
	}
	for i, lr := range policy.LimitRules {
		args[argLimits+i] = strconv.FormatInt(lr.Limit(r.Limits), 10)
	}
	return args
}

// recordOnce is one round trip: record.lua in r.Thread's slot, pipelined
// with the link and alias writes and the thread index. With follow, the
// script first reads r.Thread's alias: redirect is then set, and nothing
// was recorded, when it names a thread.
func (s *Redis) recordOnce(ctx context.Context, r Record, follow bool) (tally policy.Tally, redirect policy.ThreadID, err error) {
	keys := s.keys.Thread(r.Thread)
	args := recordArgs(r, follow)

	pipe := s.client.Pipeline()
	cmd := recordScript.EvalSha(ctx, pipe, keys, args...)
	links := s.queueLinks(ctx, pipe, r)
	s.indexThread(ctx, pipe, r) // stormguard:threads, for the operators' listing (store/list.go)
	if _, err := pipe.Exec(ctx); err != nil {
		if !isNoScript(cmd.Err()) {
			return policy.Tally{}, "", err
		}
		for _, c := range links {
			if err := c.Err(); err != nil {
				return policy.Tally{}, "", fmt.Errorf("link: %w", err)
			}
		}
		// The script cache was flushed, or this is a new server: load
		// the script and run it once more (the links are written).
		if err := recordScript.Load(ctx, s.client).Err(); err != nil {
			return policy.Tally{}, "", fmt.Errorf("load record.lua: %w", err)
		}
		cmd = recordScript.EvalSha(ctx, s.client, keys, args...)
	}
	tally, redirect, err = parseTally(cmd)
	tally.Thread = r.Thread
	return tally, redirect, err
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// parseTally checks and reads record.lua's reply; redirect is set with
// status "redirect".
func parseTally(cmd *redis.Cmd) (policy.Tally, policy.ThreadID, error) {
	v, err := cmd.Slice()
	if err != nil {
		return policy.Tally{}, "", err
	}
	if len(v) != 7 {
		return policy.Tally{}, "", fmt.Errorf("record.lua returned %d values, want 7", len(v))
	}
	rd := replyReader{v: v}
	t := policy.Tally{
		Override:  policy.Override(rd.str(0)),
		Status:    policy.Status(rd.str(1)),
		Count:     int(rd.int(2)),
		Delivered: rd.int(3),
		Crossed:   policy.Rule(rd.str(4)),
		BlockTTL:  time.Duration(rd.int(5)) * time.Millisecond,
	}
	redirect := policy.ThreadID(rd.str(6))
	switch t.Status {
	case policy.StatusNoted, policy.StatusCounted, policy.StatusDuplicate, policy.StatusBlocked, policy.StatusCrossed:
	case statusRedirect:
		if redirect == "" {
			rd.fail(errors.New("redirect to no thread"))
		}
	default:
		rd.fail(fmt.Errorf("status %q", t.Status))
	}
	if rd.err != nil {
		return policy.Tally{}, "", fmt.Errorf("record.lua reply: %w", rd.err)
	}
	return t, redirect, nil
}

// replyReader reads a script's array reply, checking each value's type;
// the first mismatch is kept in err.
type replyReader struct {
	v   []any
	err error
}

func (r *replyReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *replyReader) str(i int) string {
	s, ok := r.v[i].(string)
	if !ok {
		r.fail(fmt.Errorf("value %d is %T, want a string", i+1, r.v[i]))
	}
	return s
}

func (r *replyReader) int(i int) int64 {
	n, ok := r.v[i].(int64)
	if !ok {
		r.fail(fmt.Errorf("value %d is %T, want an integer", i+1, r.v[i]))
	}
	return n
}

// Resolve implements Store: one pipelined round of GETs (each link key may
// live in its own Cluster slot, which MGET cannot span).
func (s *Redis) Resolve(ctx context.Context, keys []policy.Key) ([]policy.ThreadID, error) {
	out := make([]policy.ThreadID, len(keys))
	cmds := make([]*redis.StringCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		if checkID("key", string(k)) != nil {
			continue // "" or not a key: linked to nothing
		}
		cmds[i] = pipe.Get(ctx, s.keys.Link(k))
	}
	if pipe.Len() == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: resolve: %w", err)
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, fmt.Errorf("store: resolve: %w", err)
		case checkID("thread", v) == nil: // anything else is not ours: ignore it
			out[i] = policy.ThreadID(v)
		}
	}
	return out, nil
}

// Globals implements Store: one pipeline of HGETALL lists, SMEMBERS exempt
// and GET mode. Values an operator mistyped (a list size that is not a
// positive number, an unknown mode) are left out.
func (s *Redis) Globals(ctx context.Context) (Globals, error) {
	pipe := s.client.Pipeline()
	lists := pipe.HGetAll(ctx, s.keys.Lists())
	exempt := pipe.SMembers(ctx, s.keys.Exempt())
	mode := pipe.Get(ctx, s.keys.Mode())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Globals{}, fmt.Errorf("store: globals: %w", err)
	}
	lv, err := lists.Result()
	if err != nil {
		return Globals{}, fmt.Errorf("store: globals: %s: %w", s.keys.Lists(), err)
	}
	ev, err := exempt.Result()
	if err != nil {
		return Globals{}, fmt.Errorf("store: globals: %s: %w", s.keys.Exempt(), err)
	}
	mv, err := mode.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Globals{}, fmt.Errorf("store: globals: %s: %w", s.keys.Mode(), err)
	}

	g := Globals{Lists: make(map[string]int, len(lv)), Mode: parseMode(mv)}
	for addr, v := range lv {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		a, aerr := normAddr("list", addr)
		if err != nil || aerr != nil || n <= 0 {
			continue
		}
		g.Lists[a] = max(g.Lists[a], n)
	}
	for _, e := range ev {
		if a, err := normAddr("exempt", e); err == nil {
			g.Exempt = append(g.Exempt, a)
		}
	}
	slices.Sort(g.Exempt)
	g.Exempt = slices.Compact(g.Exempt)
	return g, nil
}

// Close implements Store: it closes the client.
func (s *Redis) Close() error { return s.client.Close() }
