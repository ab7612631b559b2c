package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// run runs c and fails the test on an error.
func run(t *testing.T, c Config) *Report {
	t.Helper()
	rep, err := Run(t.Context(), c, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

// reportText is rep as the command prints it.
func reportText(t *testing.T, rep *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// scenario returns the report's scenario with id.
func (r *Report) scenario(t *testing.T, id string) Scenario {
	t.Helper()
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no scenario %q in %+v", id, r.Scenarios)
	return Scenario{}
}

// limitsOf is every limit rule's key with its value in set, 0 (the rule
// off) for the others.
func limitsOf(set map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for _, r := range policy.LimitRules {
		out[r.Key] = set[r.Key]
	}
	return out
}

// checkNHS asserts the NHSmail figures of the defaults: 850,000 members,
// 80 reply-alls.
func checkNHS(t *testing.T, rep *Report) {
	t.Helper()
	for _, want := range []struct {
		id                string
		accepted, refused int
		deliveries        int64
		firstReply        int // the reply (1-based) refused first; 0: none
		rule              policy.Rule
		simulated         bool
		limits            map[string]int64
	}{
		{"unprotected", 80, 0, 81 * 850000, 0, "", false, nil}, // 68,850,000
		{"count_rule", 10, 70, 11 * 850000, 11, policy.RuleMaxReplies, true,
			limitsOf(map[string]int64{"max_replies": 10})}, // 9,350,000
		{"stormguard", 1, 79, 2 * 850000, 2, policy.RuleDeliveryBudget, true,
			limitsOf(map[string]int64{"max_replies": 10, "delivery_budget": 1000000})}, // 1,700,000
	} {
		s := rep.scenario(t, want.id)
		if s.Sent != 80 || s.Accepted != want.accepted || s.Refused != want.refused || s.Deliveries != want.deliveries || s.Simulated != want.simulated {
			t.Errorf("%s: sent %d, accepted %d, refused %d, deliveries %d, simulated %v; want 80, %d, %d, %d, %v",
				want.id, s.Sent, s.Accepted, s.Refused, s.Deliveries, s.Simulated, want.accepted, want.refused, want.deliveries, want.simulated)
		}
		if fmt.Sprint(s.Limits) != fmt.Sprint(want.limits) {
			t.Errorf("%s: ran with limits %v; want %v", want.id, s.Limits, want.limits)
		}
		if len(s.Series) != 81 || s.Series[0].Seconds != 0 || s.Series[0].Deliveries != 850000 || s.Series[80].Deliveries != want.deliveries {
			t.Errorf("%s: series of %d points from %+v; want 81 from {0 850000} to %d", want.id, len(s.Series), s.Series[0], want.deliveries)
			continue
		}
		switch {
		case want.firstReply == 0 && s.FirstRefusal != nil:
			t.Errorf("%s: first refusal at %vs, want none", want.id, *s.FirstRefusal)
		case want.firstReply > 0 && (s.FirstRefusal == nil || *s.FirstRefusal != s.Series[want.firstReply].Seconds || s.FirstRefusalRule != string(want.rule)):
			t.Errorf("%s: first refusal %v (%s); want reply %d's arrival, %vs (%s)", want.id, s.FirstRefusal, s.FirstRefusalRule,
				want.firstReply, s.Series[want.firstReply].Seconds, want.rule)
		}
	}
}

// TestNHSFigures: the defaults are the NHSmail storm of 2016, run through
// the real filter on the memory store.
func TestNHSFigures(t *testing.T) {
	rep := run(t, Defaults())
	if rep.Audience != 850000 || rep.Replies != 80 || rep.Duration != "1h16m0s" || rep.Curve != "burst" || rep.Nodes != 1 || rep.Seed != 1 || rep.Backend != "memory" {
		t.Errorf("defaults: %+v", rep)
	}
	checkNHS(t, rep)
	if rep.Cleanup != "" {
		t.Errorf("memory store: redis_cleanup %q", rep.Cleanup)
	}

	out := reportText(t, rep)
	for _, want := range []string{
		"\npolicy: min_audience 2,500, max_replies 10, delivery_budget 1,000,000, ",
		", window 1h0m0s, block_for 6h0m0s, action reject, mode enforce\n",
		"SCENARIO         REPLIES  ACCEPTED  REFUSED  DELIVERIES  FIRST REFUSAL\n",
		"\nunprotected      80       80        0        68,850,000  -\n",
		"\ncount rule only  80       10        70       9,350,000   +",
		" (max_replies)\n",
		"\nstormguard       80       1         79       1,700,000   +",
		" (delivery_budget)\n",
		"on a fresh memory store (count rule only: delivery_budget 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// siteKeys lists the keys under the site's prefix.
func siteKeys(t *testing.T, rd string) []string {
	t.Helper()
	keys := strings.Fields(redisenv.CLI(t, rd, "KEYS", "stormguard:*"))
	slices.Sort(keys)
	return keys
}

// onRedis is the defaults on the Redis at addrs.
func onRedis(rc store.RedisConfig) Config {
	c := Defaults()
	c.Redis = &rc
	return c
}

// TestRedisFourNodes: the same storm over 4 nodes sharing a real Redis
// stops at the same replies, never reads the site's state (the site is in
// mode off and says the list has 5 members), and leaves no key behind.
func TestRedisFourNodes(t *testing.T) {
	rd := redisenv.Start(t)
	redisenv.CLI(t, rd, "SET", "stormguard:mode", "off")
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", list, "5")

	c := onRedis(store.RedisConfig{Addrs: []string{rd}})
	c.Nodes = 4
	rep := run(t, c)
	if rep.Nodes != 4 || rep.Backend != "redis" {
		t.Errorf("nodes %d, backend %q; want 4, redis", rep.Nodes, rep.Backend)
	}
	checkNHS(t, rep)
	if !strings.HasPrefix(rep.Cleanup, "deleted the ") {
		t.Errorf("redis_cleanup %q; want every key deleted", rep.Cleanup)
	}
	if len(rep.Prefixes) != 2 || rep.Prefixes[0] == rep.Prefixes[1] {
		t.Errorf("private prefixes %q; want two different ones", rep.Prefixes)
	}
	for _, p := range rep.Prefixes {
		if !strings.HasPrefix(p, "stormguard:sim:") || len(p) != len("stormguard:sim:")+17 {
			t.Errorf("private prefix %q; want stormguard:sim: + 16 hex digits + :", p)
		}
	}
	if got, want := siteKeys(t, rd), []string{"stormguard:lists", "stormguard:mode"}; !slices.Equal(got, want) {
		t.Errorf("keys left under stormguard: %q; want only the test's own %q", got, want)
	}
	if got := redisenv.CLI(t, rd, "DBSIZE"); got != "2" {
		t.Errorf("DBSIZE %s after the simulation, want 2", got)
	}
	if out := reportText(t, rep); !strings.Contains(out, "4 nodes, redis store\n") || !strings.Contains(out, "\nredis: private prefixes "+rep.Prefixes[0]+", ") ||
		!strings.Contains(out, "; deleted the ") {
		t.Errorf("table on Redis:\n%s", out)
	}
}

// TestRedisCluster: on a Redis Cluster the keys of the simulation, spread
// over three masters, are all found and deleted.
func TestRedisCluster(t *testing.T) {
	addrs := redisenv.StartCluster(t)
	c := onRedis(store.RedisConfig{Addrs: addrs, Cluster: true})
	c.Nodes = 2
	rep := run(t, c)
	checkNHS(t, rep)
	if !strings.HasPrefix(rep.Cleanup, "deleted the ") {
		t.Errorf("redis_cleanup %q; want every key deleted", rep.Cleanup)
	}
	for _, a := range addrs {
		if got := redisenv.CLI(t, a, "DBSIZE"); got != "0" {
			t.Errorf("master %s holds %s keys after the simulation: %s", a, got, redisenv.CLI(t, a, "KEYS", "*"))
		}
	}
}

// TestRedisWithoutScan: as the daemon's ACL user, which may not SCAN, the
// keys without a TTL are deleted and the report says the others expire by
// themselves; every key left has a TTL.
func TestRedisWithoutScan(t *testing.T) {
	rd := redisenv.Start(t)
	redisenv.AddACLUser(t, rd)
	rep := run(t, onRedis(store.RedisConfig{Addrs: []string{rd}, Username: redisenv.ACLUser, Password: redisenv.ACLPassword}))
	checkNHS(t, rep)
	if !strings.Contains(rep.Cleanup, "could not SCAN") || !strings.Contains(rep.Cleanup, "expire by themselves within 24h0m0s") {
		t.Errorf("redis_cleanup %q; want it to say the keys expire by themselves", rep.Cleanup)
	}
	keys := siteKeys(t, rd)
	if len(keys) == 0 {
		t.Fatal("no key left: SCAN should have been refused")
	}
	rc := redis.NewClient(&redis.Options{Addr: rd}) // one PTTL per key: faster than a redis-cli each
	defer rc.Close()
	for _, k := range keys {
		if !strings.HasPrefix(k, "stormguard:sim:") {
			t.Errorf("key %q outside the private prefix", k)
		}
		if ttl, err := rc.PTTL(t.Context(), k).Result(); err != nil || ttl <= 0 {
			t.Errorf("key %q left without a TTL (PTTL %v, %v)", k, ttl, err)
		}
	}
}

// TestRedisDown: an unreachable Redis is one error naming it.
func TestRedisDown(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	_, err := Run(t.Context(), onRedis(store.RedisConfig{Addrs: []string{addr}}), nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis at "+addr+": ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Run on a dead Redis: %v", err)
	}
}

// TestMonitor: with policy.action monitor nothing is refused; the replies
// that would have been are delivered with the header.
func TestMonitor(t *testing.T) {
	c := Defaults()
	c.Filter.Policy.Action = policy.ConfigMonitor
	small := c
	small.Replies, small.Audience = 5, 3000
	s := run(t, small).scenario(t, "stormguard")
	if s.Accepted != 5 || s.Refused != 0 || s.Tagged != 0 || s.Deliveries != 6*3000 { // 5 × 3001 is within the budget
		t.Errorf("monitor, small storm: %+v", s)
	}
	rep := run(t, c)
	s = rep.scenario(t, "stormguard")
	if s.Accepted != 80 || s.Refused != 0 || s.Tagged != 79 || s.FirstRefusal != nil || s.Deliveries != 81*850000 {
		t.Errorf("monitor: accepted %d, refused %d, tagged %d, first refusal %v, deliveries %d; want 80, 0, 79, none, 68850000",
			s.Accepted, s.Refused, s.Tagged, s.FirstRefusal, s.Deliveries)
	}
	if out := reportText(t, rep); !strings.Contains(out, "monitor: replies delivered with the X-Stormguard header instead of refused: count rule only 70, stormguard 79.\n") {
		t.Errorf("table does not mention the tagged replies:\n%s", out)
	}
}

// TestValidate: each bad setting is refused by Run with one line naming it.
func TestValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("Defaults: %v", err)
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Audience = 0 }, "sim: audience must be at least 1, got 0"},
		{func(c *Config) { c.Replies = -1 }, "sim: replies must not be negative, got -1"},
		{func(c *Config) { c.Replies = MaxReplies + 1 }, "sim: replies must be at most 100000, got 100001"},
		{func(c *Config) { c.Nodes = 0 }, "sim: nodes must be at least 1, got 0"},
		{func(c *Config) { c.Nodes = MaxNodes + 1 }, "sim: nodes must be at most 1000, got 1001"},
		{func(c *Config) { c.Duration = -time.Minute }, "sim: duration must not be negative, got -1m0s"},
		{func(c *Config) { c.Curve = "zigzag" }, `sim: curve "zigzag": want burst, uniform or front`},
		{func(c *Config) { c.Curve = "" }, `sim: curve "": want burst, uniform or front`},
		{func(c *Config) { c.Filter.StoreTimeout = 0 }, "sim: redis.timeout: must be positive"},
		{func(c *Config) { c.Redis = &store.RedisConfig{} }, "sim: store: redis config: no address"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			c := Defaults()
			tc.change(&c)
			rep, err := Run(t.Context(), c, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || rep != nil {
				t.Errorf("Run: %v, %v; want one line with %q", rep, err, tc.want)
			}
		})
	}
}

// TestDeterministic: the same seed gives the same report; another seed
// moves the burst's arrivals.
func TestDeterministic(t *testing.T) {
	c := Defaults()
	c.Seed, c.Nodes = 7, 3
	js := func(c Config) string {
		b, err := json.Marshal(run(t, c))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, b := js(c), js(c)
	if a != b {
		t.Errorf("same seed, different JSON:\n%s\n---\n%s", a, b)
	}
	c.Seed = 8
	if js(c) == a {
		t.Error("seeds 7 and 8 gave the same burst")
	}
}

// TestArrivals checks the curves' formulas.
func TestArrivals(t *testing.T) {
	d := 80 * time.Minute
	if got := arrivals(Uniform, 4, d, 1); !slices.Equal(got, []time.Duration{20 * time.Minute, 40 * time.Minute, 60 * time.Minute, 80 * time.Minute}) {
		t.Errorf("uniform: %v", got)
	}
	if got := arrivals(Front, 4, d, 1); !slices.Equal(got, []time.Duration{5 * time.Minute, 20 * time.Minute, 45 * time.Minute, 80 * time.Minute}) {
		t.Errorf("front: %v", got)
	}
	burst := arrivals(Burst, 10000, d, 1)
	if !slices.IsSorted(burst) || burst[0] < 0 || burst[len(burst)-1] > d {
		t.Fatalf("burst: not sorted within [0, %s]: first %s, last %s", d, burst[0], burst[len(burst)-1])
	}
	early := 0
	for _, at := range burst {
		if at < d/4 {
			early++
		}
	}
	// (1 - e^-1) / (1 - e^-4) of the replies arrive in the first quarter.
	if want := 10000 * (1 - math.Exp(-1)) / (1 - math.Exp(-4)); math.Abs(float64(early)-want) > 200 {
		t.Errorf("burst: %d of 10000 in the first quarter, want about %.0f", early, want)
	}
	if got := arrivals(Burst, 3, 0, 1); !slices.Equal(got, []time.Duration{0, 0, 0}) {
		t.Errorf("burst over 0s: %v", got)
	}
	if got := arrivals(Uniform, 0, d, 1); len(got) != 0 {
		t.Errorf("no replies: %v", got)
	}
}

// TestGateHold: with the sender gate on and action hold, nobody in the
// simulated storm is an allowed poster: the original and every reply are
// held (the quarantine action), so nothing is delivered — a held message
// must not count as delivered.
func TestGateHold(t *testing.T) {
	c := Defaults()
	c.Filter.Policy.Gate = policy.Gate{MinAudience: 5000, Action: policy.ConfigHold}
	s := run(t, c).scenario(t, "stormguard")
	if s.Accepted != 0 || s.Refused != 80 || s.Deliveries != 0 || s.FirstRefusalRule != string(policy.RuleGate) {
		t.Errorf("gate hold: accepted %d, refused %d, deliveries %d, first refusal rule %q; want 0, 80, 0, gate",
			s.Accepted, s.Refused, s.Deliveries, s.FirstRefusalRule)
	}
}

// TestSingleClientNamingTheOriginal: with every reply answering the
// original (ReplyShare 0) and one client writing them all, each client of
// the catalogue gives the plain replies' NHSmail figures: the storm is one
// thread whatever headers its client writes.
func TestSingleClientNamingTheOriginal(t *testing.T) {
	for _, cl := range Clients() {
		t.Run(cl.Name, func(t *testing.T) {
			c := Defaults()
			c.Clients = Mix{{cl.Name, 1}}
			rep := run(t, c)
			checkNHS(t, rep)
			for _, s := range rep.Scenarios[1:] {
				if s.Threads != 1 {
					t.Errorf("%s: counted in %d threads, want 1", s.ID, s.Threads)
				}
			}
			if rep.Clients != cl.Name+"=1" || rep.ReplyShare != 0 {
				t.Errorf("report: clients %q, reply share %v", rep.Clients, rep.ReplyShare)
			}
		})
	}
}

// TestNHSFiguresWithClientMix: the default client mix, half the repliers
// answering an earlier reply, must stop the NHSmail storm where the plain
// replies stop: one thread, the same figures, on the memory store and on
// Redis shared by 4 nodes.
func TestNHSFiguresWithClientMix(t *testing.T) {
	mix := func(c Config) Config {
		c.Clients, c.ReplyShare = DefaultMix(), DefaultReplyShare
		return c
	}
	for _, tc := range []struct {
		name string
		c    func(t *testing.T) Config
	}{
		{"memory", func(*testing.T) Config { return mix(Defaults()) }},
		{"redis-4-nodes", func(t *testing.T) Config {
			c := mix(onRedis(store.RedisConfig{Addrs: []string{redisenv.Start(t)}}))
			c.Nodes = 4
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := run(t, tc.c(t))
			checkNHS(t, rep)
			for _, s := range rep.Scenarios[1:] {
				if s.Threads != 1 {
					t.Errorf("%s: the storm's messages were counted in %d threads, want 1", s.ID, s.Threads)
				}
			}
		})
	}
}

// TestStormMessages: with a mix, each reply is written by the client drawn
// for it and answers the original, or with the reply share a reply picked
// among those delivered (never a refused one); the draws follow the seed.
func TestStormMessages(t *testing.T) {
	c := Defaults()
	c.Replies, c.Clients, c.ReplyShare = 4000, Mix{{"iphone", 3}, {"gmail", 1}}, 0.25
	at := arrivals(c.Curve, c.Replies, c.Duration, c.Seed)
	s := newStorm(c, at)
	sent := []message{s.message(0, nil, nil)}
	rootID := sent[0].mail.Get("Message-ID")
	var delivered []int
	toReply, iphones := 0, 0
	for i := 1; i < s.len(); i++ {
		m := s.message(i, sent, delivered)
		sent = append(sent, m)
		irt := m.mail.Get("In-Reply-To")
		if irt != rootID {
			toReply++
			p := slices.IndexFunc(sent, func(x message) bool { return x.mail.Get("Message-ID") == irt })
			if p < 1 || p%2 == 1 || !slices.Contains(m.rcpts, sent[p].from) {
				t.Fatalf("reply %d answers %s (message %d): not a delivered reply, or its sender not among %v", i, irt, p, m.rcpts)
			}
		}
		if strings.HasPrefix(m.mail.Get("X-Mailer"), "iPhone Mail") {
			iphones++
		}
		if m.at != at[i-1] || m.from != fmt.Sprintf("replier-%d@%s", i, domain) {
			t.Fatalf("reply %d: at %s from %s", i, m.at, m.from)
		}
		if i%2 == 0 { // the even replies are delivered, the odd ones refused
			delivered = append(delivered, i)
		}
	}
	// Reply 1 has nothing delivered to answer; each later one answers a
	// reply with probability 0.25.
	if toReply < 900 || toReply > 1100 {
		t.Errorf("%d of 4000 replies answer a reply, want about 1000", toReply)
	}
	if iphones < 2850 || iphones > 3150 {
		t.Errorf("%d of 4000 replies by iPhone Mail, want about 3000", iphones)
	}
	again := newStorm(c, at)
	if m := again.message(7, sent[:7], []int{2, 4, 6}); !slices.Equal(m.headers, s.message(7, sent[:7], []int{2, 4, 6}).headers) {
		t.Error("the same seed wrote reply 7 differently")
	}
	c.Seed = 2
	if m := newStorm(c, at).message(7, sent[:7], []int{2, 4, 6}); slices.Equal(m.headers, s.message(7, sent[:7], []int{2, 4, 6}).headers) {
		t.Error("seeds 1 and 2 wrote the same reply 7")
	}
}

// TestClientMixValidate: the mix and the reply share are checked with the
// rest of the config.
func TestClientMixValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.ReplyShare = 0.5 }, "sim: reply share 0.5 needs a client mix: plain replies all answer the original"},
		{func(c *Config) { c.Clients, c.ReplyShare = DefaultMix(), 1.5 }, "sim: reply share must be between 0 and 1, got 1.5"},
		{func(c *Config) { c.Clients, c.ReplyShare = DefaultMix(), -0.1 }, "sim: reply share must be between 0 and 1, got -0.1"},
		{func(c *Config) { c.Clients, c.ReplyShare = DefaultMix(), math.NaN() }, "sim: reply share must be between 0 and 1, got NaN"},
		{func(c *Config) { c.Clients = Mix{{"pine", 1}} }, `sim: clients: unknown client "pine"`},
	} {
		c := Defaults()
		tc.change(&c)
		if _, err := Run(t.Context(), c, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run: %v; want %q", err, tc.want)
		}
	}
}

// TestClientMixReport: the table says how the replies were written and,
// when the filter split the storm, into how many threads; the JSON holds
// the mix and the share.
func TestClientMixReport(t *testing.T) {
	c := Defaults()
	c.Replies, c.Audience = 30, 3000
	c.Clients, c.ReplyShare = Mix{{"iphone", 1}}, 1 // every reply answers a reply: iPhone Mail names only its parent
	rep := run(t, c)
	out := reportText(t, rep)
	if !strings.Contains(out, "\nreplies: clients by weight iphone 1; 100% answer a reply picked at random among those delivered, the others the original\npolicy: ") {
		t.Errorf("table lacks the replies line:\n%s", out)
	}
	s := rep.scenario(t, "count_rule")
	if s.Threads > 1 && !strings.Contains(out, fmt.Sprintf("\nthreads: the filter counted the storm's messages in %d threads (count rule only), ", s.Threads)) {
		t.Errorf("the storm was split into %d threads; the table does not say so:\n%s", s.Threads, out)
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"clients":"iphone=1","reply_share":1,`) || !strings.Contains(string(b), `"threads":`) {
		t.Errorf("JSON: %s, %v", b, err)
	}
	plain := reportText(t, run(t, Defaults()))
	if strings.Contains(plain, "replies:") || strings.Contains(plain, "threads:") {
		t.Errorf("plain replies, one thread: no replies or threads line wanted:\n%s", plain)
	}
}
