package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// redisHarness adds what the suite needs to poke at a Redis store: the
// real redis-cli, as operators use it.
type redisHarness struct {
	*store.Redis
	addr, prefix string
	cluster      bool
}

func (h redisHarness) SetRawOverride(t *testing.T, th policy.ThreadID, v string) {
	args := []string{"SET", store.NewKeys(h.prefix).Override(th), v}
	if h.cluster {
		args = append([]string{"-c"}, args...) // follow MOVED to the key's node
	}
	redisenv.CLI(t, h.addr, args...)
}

var prefixSeq atomic.Int64

// openRedis opens a store on addr with a prefix of its own, so that tests
// share one server without seeing each other's keys.
func openRedis(t testing.TB, addr string, cluster bool) redisHarness {
	t.Helper()
	prefix := fmt.Sprintf("sgtest%d:", prefixSeq.Add(1))
	s, err := store.OpenRedis(store.RedisConfig{
		Addrs: []string{addr}, Cluster: cluster, Prefix: prefix,
		Timeout: 5 * time.Second, // generous: -race on a small machine
	})
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	return redisHarness{Redis: s, addr: addr, prefix: prefix, cluster: cluster}
}

func TestRedis(t *testing.T) {
	addr := redisenv.Start(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openRedis(t, addr, false)
	})
}

// TestRedisCluster runs the suite against a one-node Redis Cluster, which
// refuses (CROSSSLOT) any script or MULTI whose keys are not in one slot,
// and against a three-node one, where a record's thread and links live on
// different nodes.
func TestRedisCluster(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dnodes", nodes), func(t *testing.T) {
			addr := redisenv.StartClusterOf(t, nodes)[0]
			storetest.Run(t, func(t *testing.T) storetest.Store {
				return openRedis(t, addr, true)
			})
		})
	}
}

func replyTo(th policy.ThreadID, l policy.Limits) store.Record {
	return store.Record{
		Thread: th, Message: storetest.NewKey(), Kind: policy.KindReply, Audience: 3000,
		Sender: "a@example.org", Subject: "Re: x", Now: time.Now(), Limits: l, Retention: time.Hour,
	}
}

var defaultLimits = policy.Limits{MaxReplies: 10, DeliveryBudget: 1_000_000, Window: time.Hour, BlockFor: 6 * time.Hour}

// TestRedisNoScript: after SCRIPT FLUSH (or on a new server) the script is
// loaded again and the reply counted once.
func TestRedisNoScript(t *testing.T) {
	addr := redisenv.Start(t)
	s := openRedis(t, addr, false)
	defer s.Close()
	ctx := context.Background()
	th := storetest.NewThread()
	for i := 1; i <= 3; i++ {
		redisenv.CLI(t, addr, "SCRIPT", "FLUSH")
		tally, err := s.Record(ctx, replyTo(th, defaultLimits))
		if err != nil {
			t.Fatalf("Record after SCRIPT FLUSH: %v", err)
		}
		if tally.Status != policy.StatusCounted || tally.Count != i {
			t.Fatalf("Record %d after SCRIPT FLUSH: %+v, want counted once (count %d)", i, tally, i)
		}
	}
	if got := redisenv.CLI(t, addr, "SCRIPT", "EXISTS", redis.NewScript(recordLua(t)).Hash()); got != "1" {
		t.Errorf("SCRIPT EXISTS = %q, want the script cached", got)
	}
}

func recordLua(t *testing.T) string {
	t.Helper()
	b, err := readFile("record.lua")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRedisKeys: every key is under the prefix and named as docs/design.md says.
func TestRedisKeys(t *testing.T) {
	addr := redisenv.Start(t)
	c, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Prefix: "acme:sg:"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	th, link := storetest.NewThread(), storetest.NewKey()
	l := defaultLimits
	l.MaxReplies = 1
	r := replyTo(th, l)
	r.Links = []policy.Key{link}
	for range 2 { // count, then cross
		r.Message = storetest.NewKey()
		if _, err := c.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range []error{
		c.SetOverride(ctx, th, policy.OverrideAllow, time.Hour),
		c.SetList(ctx, "all@example.org", 9000),
		c.AddExempt(ctx, "boss@example.org"),
		c.SetMode(ctx, policy.ModeMonitor),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Fields(redisenv.CLI(t, addr, "KEYS", "*"))
	slices.Sort(got)
	tag := "acme:sg:{" + string(th) + "}:"
	want := []string{
		tag + "block", tag + "meta", tag + "override", tag + "replies", tag + "senders",
		"acme:sg:exempt", "acme:sg:link:{" + string(link) + "}", "acme:sg:lists", "acme:sg:mode",
		store.NewKeys("acme:sg:").Threads(store.ThreadShard(th)), "acme:sg:storms", // index shard; storms: the override
		"acme:sg:blocked", // the blocked index: the override
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("keys:\n got %q\nwant %q", got, want)
	}
	for key, typ := range map[string]string{
		tag + "replies": "zset", tag + "meta": "hash", tag + "block": "string", tag + "override": "string",
		tag + "senders": "hash", "acme:sg:lists": "hash", "acme:sg:exempt": "set", "acme:sg:mode": "string",
	} {
		if got := redisenv.CLI(t, addr, "TYPE", key); got != typ {
			t.Errorf("TYPE %s = %s, want %s", key, got, typ)
		}
	}
	if got := redisenv.CLI(t, addr, "GET", tag+"block"); got != string(policy.RuleMaxReplies) {
		t.Errorf("block value = %q, want the rule", got)
	}
	if got := redisenv.CLI(t, addr, "GET", "acme:sg:link:{"+string(link)+"}"); got != string(th) {
		t.Errorf("link value = %q, want %s", got, th)
	}
	for _, key := range []string{tag + "replies", tag + "meta", tag + "block", tag + "override", tag + "senders", "acme:sg:link:{" + string(link) + "}"} {
		if ttl := redisenv.CLI(t, addr, "PTTL", key); strings.HasPrefix(ttl, "-") {
			t.Errorf("PTTL %s = %s, want a TTL", key, ttl)
		}
	}
}

// TestRedisOperator does what docs/operations.md promises operators can do with
// redis-cli, with the default prefix and the real redis-cli.
func TestRedisOperator(t *testing.T) {
	addr := redisenv.Start(t)
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	th := storetest.NewThread()
	l := defaultLimits
	l.MaxReplies = 1
	for range 2 {
		if _, err := s.Record(ctx, replyTo(th, l)); err != nil {
			t.Fatal(err)
		}
	}
	redisenv.CLI(t, addr, "SET", "stormguard:{"+string(th)+"}:override", "allow", "EX", "3600")
	tally, err := s.Record(ctx, replyTo(th, l))
	if err != nil || tally.Override != policy.OverrideAllow {
		t.Errorf("after redis-cli SET override allow: %+v %v", tally, err)
	}
	if ttl := redisenv.CLI(t, addr, "TTL", "stormguard:{"+string(th)+"}:override"); ttl == "-1" || ttl == "-2" {
		t.Errorf("the operator's TTL is gone: %s", ttl)
	}
	redisenv.CLI(t, addr, "HSET", "stormguard:lists", "all-staff@example.org", "850000")
	redisenv.CLI(t, addr, "HSET", "stormguard:lists", "typo@example.org", "lots")
	redisenv.CLI(t, addr, "SADD", "stormguard:exempt", "CEO@Example.org")
	redisenv.CLI(t, addr, "SET", "stormguard:mode", "monitor")
	g, err := s.Globals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Lists) != 1 || g.Lists["all-staff@example.org"] != 850000 || !slices.Equal(g.Exempt, []string{"ceo@example.org"}) || g.Mode != policy.ModeMonitor {
		t.Errorf("Globals after redis-cli = %+v", g)
	}
	redisenv.CLI(t, addr, "SET", "stormguard:mode", "monitr")
	if g, err := s.Globals(ctx); err != nil || g.Mode != "" {
		t.Errorf("Globals with a mistyped mode = %q, %v; want unset", g.Mode, err)
	}
	redisenv.CLI(t, addr, "DEL", "stormguard:{"+string(th)+"}:block")
	if got := info(t, s, th).Blocked; got {
		t.Error("still blocked after redis-cli DEL of the block key")
	}
}

func info(t *testing.T, s store.Admin, th policy.ThreadID) store.ThreadInfo {
	t.Helper()
	ti, err := s.Thread(context.Background(), th, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// TestRedisOneSlot: a thread's keys hash to one Cluster slot, as the real
// server computes it.
func TestRedisOneSlot(t *testing.T) {
	addr := redisenv.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	for range 20 {
		th := storetest.NewThread()
		slot := redisenv.CLI(t, addr, "CLUSTER", "KEYSLOT", string(th))
		for _, key := range store.NewKeys("").Thread(th) {
			if got := redisenv.CLI(t, addr, "CLUSTER", "KEYSLOT", key); got != slot {
				t.Fatalf("KEYSLOT %s = %s, want %s (the thread's)", key, got, slot)
			}
		}
	}
}

// TestRedisUnreachable: a Redis that accepts connections and never answers
// costs a call its timeout, not a hang; a short deadline on the context
// wins over a long timeout.
func TestRedisUnreachable(t *testing.T) {
	addr := blackHole(t)
	for _, c := range []struct {
		timeout, ctx time.Duration
	}{{100 * time.Millisecond, time.Minute}, {time.Minute, 100 * time.Millisecond}} {
		s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Timeout: c.timeout})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.ctx)
		start := time.Now()
		_, err = s.Record(ctx, replyTo(storetest.NewThread(), defaultLimits))
		took := time.Since(start)
		t.Logf("timeout %v, deadline %v: failed after %v: %v", c.timeout, c.ctx, took, err)
		cancel()
		s.Close()
		if err == nil || !strings.Contains(err.Error(), "store: record thread") {
			t.Errorf("timeout %v, deadline %v: Record = %v, want a wrapped error", c.timeout, c.ctx, err)
		}
		if took > time.Second {
			t.Errorf("timeout %v, deadline %v: Record took %v", c.timeout, c.ctx, took)
		}
	}
}

// TestRedisRecovers: calls fail while Redis is unreachable and work again,
// on the same store, once it is back.
func TestRedisRecovers(t *testing.T) {
	p := newProxy(t, redisenv.Start(t))
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{p.addr}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	th := storetest.NewThread()
	record := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.Record(ctx, replyTo(th, defaultLimits))
		return err
	}
	if err := record(); err != nil {
		t.Fatal(err)
	}
	p.cut()
	if err := record(); err == nil {
		t.Fatal("Record through a cut connection succeeded")
	}
	p.restore()
	if err := record(); err != nil {
		t.Fatalf("Record after Redis came back: %v", err)
	}
	if got := info(t, s, th).Accepted; got != 2 {
		t.Errorf("accepted = %d, want 2", got)
	}
}

func TestRedisConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  store.RedisConfig
		ok   bool
	}{
		{"one server", store.RedisConfig{Addrs: []string{"10.0.0.1:6379"}}, true},
		{"cluster", store.RedisConfig{Addrs: []string{"a:7000", "b:7000"}, Cluster: true}, true},
		{"sentinel", store.RedisConfig{Addrs: []string{"a:26379", "b:26379"}, MasterName: "mymaster", DB: 2}, true},
		{"no address", store.RedisConfig{}, false},
		{"no port", store.RedisConfig{Addrs: []string{"redis"}}, false},
		{"two servers", store.RedisConfig{Addrs: []string{"a:6379", "b:6379"}}, false},
		{"cluster and sentinel", store.RedisConfig{Addrs: []string{"a:1"}, Cluster: true, MasterName: "m"}, false},
		{"cluster db", store.RedisConfig{Addrs: []string{"a:1"}, Cluster: true, DB: 1}, false},
		{"negative db", store.RedisConfig{Addrs: []string{"a:1"}, DB: -1}, false},
		{"negative timeout", store.RedisConfig{Addrs: []string{"a:1"}, Timeout: -time.Second}, false},
		{"brace prefix", store.RedisConfig{Addrs: []string{"a:1"}, Prefix: "sg{x}:"}, false},
		{"wait", store.RedisConfig{Addrs: []string{"a:1"}, WaitReplicas: 1}, true},
		{"negative wait", store.RedisConfig{Addrs: []string{"a:1"}, WaitReplicas: -1}, false},
		{"wait as long as the call", store.RedisConfig{Addrs: []string{"a:1"}, WaitReplicas: 1, WaitTimeout: store.DefaultTimeout}, false},
		{"wait longer, no wait asked", store.RedisConfig{Addrs: []string{"a:1"}, WaitTimeout: time.Second}, true},
	} {
		err := c.cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", c.name, err, c.ok)
		}
		if _, oerr := store.OpenRedis(c.cfg); (oerr == nil) != c.ok {
			t.Errorf("%s: OpenRedis error %v, want ok=%v", c.name, oerr, c.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "store: redis config: ") {
			t.Errorf("%s: error %q lacks the package and operation", c.name, err)
		}
	}
}

func BenchmarkRedisRecord(b *testing.B) {
	s := openRedis(b, redisenv.Start(b), false)
	defer s.Close()
	storetest.BenchRecord(b, s)
}

// loseRecordReply is a go-redis hook that, while armed, runs every
// pipeline holding record.lua on one thread and then fails the script's
// command alone: Redis ran the pipeline, the link writes' answers came
// back, the script's did not.
type loseRecordReply struct {
	key   string // the thread's replies key, KEYS[1] of record.lua
	armed atomic.Bool
}

func (h *loseRecordReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *loseRecordReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *loseRecordReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if h.armed.Load() && strings.EqualFold(c.Name(), "evalsha") && slices.Contains(c.Args(), any(h.key)) {
				lost := errors.New("injected: the reply was lost")
				c.SetErr(lost) // the script's alone: the link writes' answers arrived
				return lost
			}
		}
		return err
	}
}

// TestRedisRecordErrorDropsItsLinks: a record whose script's reply is
// lost is an error (the daemon decides by store.on_error), and the links
// the message's pipeline created are taken back: a verdict the store did
// not give writes no identity. (When the whole connection drops, the
// link writes' answers are lost too and what they created stays.) The same message once Redis answers again is
// the same message (a duplicate, counted once), and links.
func TestRedisRecordErrorDropsItsLinks(t *testing.T) {
	addr := redisenv.Start(t)
	storm := storetest.NewThread()
	prefix := fmt.Sprintf("sgtest%d:", prefixSeq.Add(1))
	hook := &loseRecordReply{key: store.NewKeys(prefix).Replies(storm)}
	client := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	client.AddHook(hook)
	s := store.NewRedis(client, prefix)
	defer s.Close()
	ctx := context.Background()

	// Load the script, so that the armed round is a pipeline.
	if _, err := s.Record(ctx, replyTo(storetest.NewThread(), defaultLimits)); err != nil {
		t.Fatal(err)
	}
	r := replyTo(storm, defaultLimits)
	r.Links = []policy.Key{r.Message, storetest.NewKey()}
	hook.armed.Store(true)
	if _, err := s.Record(ctx, r); err == nil {
		t.Fatal("Record succeeded with its reply lost")
	}
	hook.armed.Store(false)
	if ids, err := s.Resolve(ctx, r.Links); err != nil || ids[0] != "" || ids[1] != "" {
		t.Errorf("links after the lost reply = %q, %v; want none", ids, err)
	}
	tally, err := s.Record(ctx, r)
	if err != nil || tally.Thread != storm || tally.Status != policy.StatusDuplicate || tally.Count != 1 {
		t.Fatalf("Record again = %+v, %v; want a duplicate in %s (count 1)", tally, err, storm)
	}
	if ids, err := s.Resolve(ctx, r.Links); err != nil || ids[0] != storm || ids[1] != storm {
		t.Errorf("links after the retry = %q, %v; want %s", ids, err, storm)
	}
}
