package store

import (
	"cmp"
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

// DefaultWaitTimeout bounds the WAIT after a record when
// RedisConfig.WaitReplicas is set and WaitTimeout is 0.
const DefaultWaitTimeout = 100 * time.Millisecond

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
	// WaitReplicas > 0: each record is followed, on its connection, by a
	// WAIT for that many replicas of the thread's master; a record fewer
	// replicas acknowledged within WaitTimeout fails with a
	// *NotReplicatedError (a failover could lose it).
	WaitReplicas int
	WaitTimeout  time.Duration // 0: DefaultWaitTimeout; below Timeout
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
	if c.WaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("wait_replicas %d: want >= 0", c.WaitReplicas))
	}
	if timeout, wait := cmp.Or(c.Timeout, DefaultTimeout), cmp.Or(c.WaitTimeout, DefaultWaitTimeout); c.WaitTimeout < 0 || c.WaitReplicas > 0 && wait >= timeout {
		errs = append(errs, fmt.Errorf("wait_timeout %v: want >= 0 and below the timeout, %v (the WAIT is part of the record's call)", c.WaitTimeout, timeout))
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
// writes. Resolve is one pipelined round of GETs.
type Redis struct {
	client   redis.UniversalClient
	keys     Keys
	timeout  time.Duration // deadline of each call that Globals makes; 0: DefaultTimeout
	refusing refusing      // threads this node saw refuse lately (store/links.go)
	wait     waitFor       // replicas each record waits for
}

// waitFor is a WAIT after each record: for replicas replicas, at most
// timeout. replicas 0: none.
type waitFor struct {
	replicas int
	timeout  time.Duration
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
	s := NewRedis(client, c.Prefix)
	s.timeout = c.Timeout
	s.wait = waitFor{c.WaitReplicas, cmp.Or(c.WaitTimeout, DefaultWaitTimeout)}
	return s, nil
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
	if cc, ok := client.(*redis.ClusterClient); ok {
		cc.AddHook(followFailover{cc}) // store/failover.go
	}
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

// Client is the store's Redis client, for what keeps its own data on the
// same Redis (history.NewRedis). Close closes it.
func (s *Redis) Client() redis.UniversalClient { return s.client }

// Record implements Store.
func (s *Redis) Record(ctx context.Context, r Record) (policy.Tally, error) {
	tally, err := s.record(ctx, r)
	if err != nil { // a *NotReplicatedError carries the master's tally
		return policy.Tally{}, fmt.Errorf("store: record thread %s: %w", r.Thread, err)
	}
	s.recordStorm(ctx, r, tally) // the storms index (store/list.go)
	return tally, nil
}

func (s *Redis) record(ctx context.Context, r Record) (policy.Tally, error) {
	if err := r.check(); err != nil {
		return policy.Tally{}, err
	}
	// Write the links in the script's round trip unless this node saw
	// the thread refuse lately (store/links.go).
	try := r.Kind != policy.KindAutoReply && !s.refusing.has(r.Thread, time.Now())
	var create []string
	if try {
		create = s.linkKeys(r)
	}
	tally, ws, err := s.recordOnce(ctx, r, create)
	created := written(ws)
	var unreplicated *NotReplicatedError
	if err != nil && !errors.As(err, &unreplicated) {
		// The verdict is not the store's to give: no links.
		return policy.Tally{}, errors.Join(err, s.dropLinks(ctx, created))
	}
	// Recorded (replicated or not): the links follow the tally. A link
	// write that got no answer counts as not tried: an admitted message
	// writes its links again (SET NX: what exists stays).
	admitted := policy.MayLink(r.Kind, tally)
	s.refusing.note(r.Thread, tally, r.Kind, time.Now())
	if ferr := s.fixLinks(ctx, r, admitted, try && answered(ws), created); ferr != nil {
		// The tally stands; a link left over or missing only changes
		// which thread a later reply is looked up in.
		return tally, errors.Join(err, fmt.Errorf("links: %w", ferr))
	}
	return tally, err
}

// NotReplicatedError is a record the master counted but fewer replicas
// than RedisConfig.WaitReplicas acknowledged in time: a failover now
// could lose it. Tally is the master's answer.
type NotReplicatedError struct {
	Tally       policy.Tally
	Acked, Want int
	Err         error // the WAIT's own error, if it failed
}

func (e *NotReplicatedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("recorded, but the WAIT for %d replica(s) failed: %v", e.Want, e.Err)
	}
	return fmt.Sprintf("recorded, but %d of %d replica(s) acknowledged it in time", e.Acked, e.Want)
}

func (e *NotReplicatedError) Unwrap() error { return e.Err }

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
	argMaxDuplicates
	argMaxSenders
	argLimits // the first limit
)

var recordArgNames = [argLimits]string{
	argKind:          "kind",
	argNow:           "now",
	argMsg:           "msg",
	argMember:        "member",
	argAudience:      "audience",
	argSender:        "sender",
	argSubject:       "subject",
	argWindow:        "window",
	argBlockFor:      "block_for",
	argRetention:     "retention",
	argMaxDuplicates: "max_duplicates",
	argMaxSenders:    "max_senders",
}

// recordArgs is record.lua's ARGV for r: the arguments recordArgNames
// names, then each policy.LimitRules limit.
func recordArgs(r Record) []any {
	msg, member := r.member()
	args := make([]any, argLimits+len(policy.LimitRules))
	args[argKind] = string(r.Kind)
	args[argNow] = strconv.FormatInt(r.Now.UnixMilli(), 10)
	args[argMsg] = msg
	args[argMember] = member
	args[argAudience] = strconv.Itoa(r.Audience)
	args[argSender] = r.sender()
	args[argSubject] = r.Subject
	args[argWindow] = strconv.FormatInt(r.Limits.Window.Milliseconds(), 10)
	args[argBlockFor] = strconv.FormatInt(r.Limits.BlockFor.Milliseconds(), 10)
	args[argRetention] = strconv.FormatInt(r.Retention.Milliseconds(), 10)
	args[argMaxDuplicates] = strconv.Itoa(policy.MaxDuplicates)
	args[argMaxSenders] = strconv.Itoa(MaxSenders)
	for i, lr := range policy.LimitRules {
		args[argLimits+i] = strconv.FormatInt(lr.Limit(r.Limits), 10)
	}
	return args
}

// recordOnce is one round trip: record.lua in r.Thread's slot, pipelined
// with the link writes (SET NX of create) and the thread index (not for an
// auto-reply, which writes nothing: record.lua's contract), and with the
// WAIT for replicas when s waits. ws are the queued link writes, whose
// results are read even when err is set.
//
// WAIT counts the writes of its own connection. A Cluster pipeline splits
// by node and sends a keyless WAIT to any node, so on a Cluster that waits
// the script and its WAIT go first to the master of the thread's slot, and
// the links and index follow: two round trips.
func (s *Redis) recordOnce(ctx context.Context, r Record, create []string) (tally policy.Tally, ws []linkWrite, err error) {
	keys := s.keys.Thread(r.Thread)
	args := recordArgs(r)
	if cluster, ok := s.client.(*redis.ClusterClient); ok && s.wait.replicas > 0 {
		return s.recordSplit(ctx, cluster, r, keys, args, create)
	}
	pipe := s.client.Pipeline()
	cmd := recordScript.EvalSha(ctx, pipe, keys, args...)
	ws = s.queueWrites(ctx, pipe, r, create)
	acked := s.wait.queue(ctx, pipe) // after every write of this connection
	// A failed WAIT does not fail the record (tallyOf reads it), nor does
	// a link write or the index on another Cluster node once record.lua
	// has answered (record writes the links again).
	if _, err := pipe.Exec(ctx); err != nil && (acked == nil || acked.Err() != err) && cmd.Err() != nil {
		if !isNoScript(cmd.Err()) {
			return policy.Tally{}, ws, err
		}
		for _, w := range ws {
			if w.nx.Err() != nil {
				return policy.Tally{}, ws, fmt.Errorf("link %s: failed", w.key)
			}
		}
		// The script cache was flushed, or this is a new server (a
		// promoted replica has none): load the script and run it once
		// more (the links are written). Load first: an EVALSHA that finds
		// no script would still cost its WAIT before saying so.
		if err := recordScript.Load(ctx, s.client).Err(); err != nil {
			return policy.Tally{}, ws, fmt.Errorf("load record.lua: %w", err)
		}
		if cmd, acked, _ = s.evalWait(ctx, s.client, keys, args); cmd.Err() != nil {
			return policy.Tally{}, ws, cmd.Err()
		}
	}
	tally, err = s.tallyOf(r, cmd, acked)
	return tally, ws, err
}

// recordSplit is recordOnce on a Cluster that waits for replicas: the
// script and its WAIT on the master of the thread's slot, then the link
// writes and the index through the cluster client.
func (s *Redis) recordSplit(ctx context.Context, cluster *redis.ClusterClient, r Record, keys []string, args []any, create []string) (policy.Tally, []linkWrite, error) {
	master, err := cluster.MasterForKey(ctx, keys[0])
	if err != nil {
		return policy.Tally{}, nil, err
	}
	cmd, acked, _ := s.evalWait(ctx, master, keys, args)
	if err := cmd.Err(); err != nil {
		cluster.ReloadState(ctx) // a MOVED or a dead master: learn the new map
		return policy.Tally{}, nil, err
	}
	tally, terr := s.tallyOf(r, cmd, acked)
	if terr != nil && !errors.As(terr, new(*NotReplicatedError)) {
		return policy.Tally{}, nil, terr
	}
	pipe := s.client.Pipeline()
	ws := s.queueWrites(ctx, pipe, r, create)
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // as in recordOnce: the tally stands, record writes the links again
	}
	return tally, ws, terr
}

// queueWrites queues the link writes (SET NX of create) and, but for an
// auto-reply, which writes nothing (record.lua's contract), the thread
// index.
func (s *Redis) queueWrites(ctx context.Context, pipe redis.Pipeliner, r Record, create []string) []linkWrite {
	ws := s.queueCreate(ctx, pipe, r, create)
	if r.Kind != policy.KindAutoReply {
		s.indexThread(ctx, pipe, r) // stormguard:threads, for the operators' listing (store/list.go)
	}
	return ws
}

// evalWait runs record.lua on c with the WAIT for replicas after it on the
// same connection (a pipeline; c is one node's client when s waits). A
// script not in the node's cache is loaded and run again.
func (s *Redis) evalWait(ctx context.Context, c redis.Cmdable, keys []string, args []any) (cmd *redis.Cmd, acked *redis.Cmd, err error) {
	for range 2 {
		pipe := c.Pipeline()
		cmd = recordScript.EvalSha(ctx, pipe, keys, args...)
		acked = s.wait.queue(ctx, pipe)
		if _, err = pipe.Exec(ctx); !isNoScript(cmd.Err()) {
			break
		}
		if err = recordScript.Load(ctx, c).Err(); err != nil {
			return cmd, acked, fmt.Errorf("load record.lua: %w", err)
		}
	}
	return cmd, acked, err
}

// tallyOf reads record.lua's answer and, when s waits, the WAIT's: a
// tally fewer replicas than s.wait.replicas acknowledged comes with a
// *NotReplicatedError.
func (s *Redis) tallyOf(r Record, cmd *redis.Cmd, acked *redis.Cmd) (policy.Tally, error) {
	tally, err := parseTally(cmd)
	if err != nil {
		return policy.Tally{}, err
	}
	tally.Thread = r.Thread
	if acked == nil {
		return tally, nil
	}
	if n, err := acked.Int64(); err != nil || n < int64(s.wait.replicas) {
		return tally, &NotReplicatedError{Tally: tally, Acked: int(n), Want: s.wait.replicas, Err: err}
	}
	return tally, nil
}

// queue queues the WAIT on pipe, or nothing (nil) when w waits for none.
func (w waitFor) queue(ctx context.Context, pipe redis.Pipeliner) *redis.Cmd {
	if w.replicas == 0 {
		return nil
	}
	return pipe.Do(ctx, "WAIT", w.replicas, w.timeout.Milliseconds())
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// parseTally checks and reads record.lua's reply.
func parseTally(cmd *redis.Cmd) (policy.Tally, error) {
	v, err := cmd.Slice()
	if err != nil {
		return policy.Tally{}, err
	}
	if len(v) != 6 {
		return policy.Tally{}, fmt.Errorf("record.lua returned %d values, want 6", len(v))
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
	switch t.Status {
	case policy.StatusNoted, policy.StatusCounted, policy.StatusDuplicate, policy.StatusBlocked, policy.StatusCrossed:
	default:
		rd.fail(fmt.Errorf("status %q", t.Status))
	}
	if rd.err != nil {
		return policy.Tally{}, fmt.Errorf("record.lua reply: %w", rd.err)
	}
	return t, nil
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

// Close implements Store: it closes the client.
func (s *Redis) Close() error { return s.client.Close() }
