// Package sim replays a reply-all storm against the real filter and store
// and says what got through: once unprotected (computed), once with the
// count rule only and once with the policy as configured, each on fresh
// state.
//
// The filter is the daemon's own: a milter.Filter served by milter.Server
// on a loopback port per simulated mail node, driven by go-milter's client
// as Postfix drives it, reading a simulated clock. The store is a fresh
// memory store per scenario, or the configured Redis under a private
// prefix that is deleted afterwards. Charts of the outcome are drawn with
// gonum/plot.
//
// It must not read or change the site's own state: no storm, list, mode or
// override of the configured prefix is touched, and a store failure during
// a run is an error, never a fallback that would falsify the counts. It
// takes plain structs (no viper, no flags) and prints nothing itself.
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// The limits of one run.
const (
	MaxReplies = 100000 // replies per run: the messages go one at a time
	MaxNodes   = 1000   // each node is a listener and a connection
)

// Curve is how the replies' arrival times are spread over the duration.
type Curve string

const (
	Burst   Curve = "burst"   // random from the seed, most early
	Uniform Curve = "uniform" // evenly spaced
	Front   Curve = "front"   // front-loaded, fixed
)

// Config is one simulation: the storm, the nodes it is spread over, and
// the daemon's settings the nodes run with.
type Config struct {
	Audience int           // members of the list the storm is sent to
	Replies  int           // reply-alls, each from a different sender
	Duration time.Duration // simulated time the replies arrive in
	Curve    Curve
	Seed     int64 // seed of the burst curve: the same seed gives the same run
	Nodes    int   // mail nodes, each with its own milter; message i goes to node i mod Nodes

	// How people reply. Clients is the mix of mail clients the repliers
	// write with (each reply's client drawn from the seed; the catalogue
	// in clients.go writes its headers), and ReplyShare the share of them,
	// 0 to 1, who answer a reply picked at random among those delivered
	// so far rather than the original. Without Clients every reply is a
	// plain one (In-Reply-To and References naming the original, an id of
	// its own), and ReplyShare must be 0.
	Clients    Mix
	ReplyShare float64

	Filter milter.Config      // the daemon's filter settings, the policy among them
	Redis  *store.RedisConfig // nil: a fresh memory store per scenario
}

// Defaults is the NHSmail storm of November 2016: 80 reply-alls to a list
// of 850,000 over 76 minutes, on one node with the daemon's defaults.
func Defaults() Config {
	return Config{
		Audience: 850000,
		Replies:  80,
		Duration: 76 * time.Minute,
		Curve:    Burst,
		Seed:     1,
		Nodes:    1,
		Filter:   milter.Defaults(),
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.Audience < 1:
		return fmt.Errorf("sim: audience must be at least 1, got %d", c.Audience)
	case c.Replies < 0:
		return fmt.Errorf("sim: replies must not be negative, got %d", c.Replies)
	case c.Replies > MaxReplies:
		return fmt.Errorf("sim: replies must be at most %d, got %d", MaxReplies, c.Replies)
	case c.Nodes < 1:
		return fmt.Errorf("sim: nodes must be at least 1, got %d", c.Nodes)
	case c.Nodes > MaxNodes:
		return fmt.Errorf("sim: nodes must be at most %d, got %d", MaxNodes, c.Nodes)
	case c.Duration < 0:
		return fmt.Errorf("sim: duration must not be negative, got %s", c.Duration)
	case !(c.ReplyShare >= 0 && c.ReplyShare <= 1): // NaN too
		return fmt.Errorf("sim: reply share must be between 0 and 1, got %v", c.ReplyShare)
	case c.ReplyShare > 0 && len(c.Clients) == 0:
		return fmt.Errorf("sim: reply share %v needs a client mix: plain replies all answer the original", c.ReplyShare)
	}
	if len(c.Clients) > 0 {
		if err := c.Clients.Validate(); err != nil {
			return err
		}
	}
	switch c.Curve {
	case Burst, Uniform, Front:
	default:
		return fmt.Errorf("sim: curve %q: want burst, uniform or front", c.Curve)
	}
	if err := c.Filter.Validate(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if c.Redis != nil {
		if err := c.Redis.Validate(); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
	}
	return nil
}

func (c Config) backend() string {
	if c.Redis != nil {
		return "redis"
	}
	return "memory"
}

// Report is the outcome of a run, as the command prints it (WriteText) or
// encodes it as JSON.
type Report struct {
	Audience int    `json:"audience"`
	Replies  int    `json:"replies"`
	Duration string `json:"duration"`
	Curve    string `json:"curve"`
	Seed     int64  `json:"seed"`
	Nodes    int    `json:"nodes"`
	Backend  string `json:"backend"`
	// Clients is the client mix as ParseMix reads it, "" for plain
	// replies; ReplyShare the share answering an earlier reply.
	Clients    string     `json:"clients,omitempty"`
	ReplyShare float64    `json:"reply_share"`
	Policy     Policy     `json:"policy"`
	Scenarios  []Scenario `json:"scenarios"`
	// Cleanup says what became of the Redis keys the run wrote.
	Cleanup string `json:"redis_cleanup,omitempty"`

	Span     time.Duration `json:"-"` // the configured duration, the chart's time axis
	Header   string        `json:"-"` // the monitor header, for the table
	Prefixes []string      `json:"-"` // the private Redis prefixes (random: not in the JSON)
}

// Policy is the policy the protected scenarios ran with.
type Policy struct {
	MinAudience int              `json:"min_audience"`
	Limits      map[string]int64 `json:"limits"` // by policy.LimitRules' Key; 0: the rule is off
	Window      string           `json:"window"`
	BlockFor    string           `json:"block_for"`
	Action      string           `json:"action"`
	Mode        string           `json:"mode"`
}

// Scenario is one scenario's outcome.
type Scenario struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Simulated  bool             `json:"simulated"`        // false: computed (unprotected)
	Limits     map[string]int64 `json:"limits,omitempty"` // what it ran with, as Policy.Limits
	Sent       int              `json:"replies_sent"`
	Accepted   int              `json:"accepted"` // replies delivered, tagged ones included
	Refused    int              `json:"refused"`  // rejected or tempfailed
	Tagged     int              `json:"tagged"`   // delivered with the monitor header
	Deliveries int64            `json:"deliveries"`
	// FirstRefusal is the simulated time of the first refused reply; nil: none.
	FirstRefusal     *float64 `json:"first_refusal_seconds"`
	FirstRefusalRule string   `json:"first_refusal_rule,omitempty"`
	// Threads is how many threads the filter counted the storm's messages
	// in: 1 when it saw one conversation; 0 for the computed scenario.
	Threads int     `json:"threads"`
	Series  []Point `json:"series"`
}

// Point is the cumulative deliveries after the message that arrived at Seconds.
type Point struct {
	Seconds    float64 `json:"seconds"`
	Deliveries int64   `json:"deliveries"`
}

// protected are the scenarios that run through the filter, in report
// order after "unprotected": the count rule alone (max_replies; every
// other limit 0, which disables its rule: Exchange Online's rule), then
// the policy as configured.
func protected(l policy.Limits) []struct {
	id, name string
	limits   policy.Limits
} {
	countOnly := policy.Limits{MaxReplies: l.MaxReplies, Window: l.Window, BlockFor: l.BlockFor}
	return []struct {
		id, name string
		limits   policy.Limits
	}{{"count_rule", "count rule only", countOnly}, {"stormguard", "stormguard", l}}
}

// Run runs the scenarios: unprotected is computed, the others run through
// the filter, one message at a time. log gets the nodes' warnings; nil
// discards them.
func Run(ctx context.Context, c Config, log *slog.Logger) (*Report, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	at := arrivals(c.Curve, c.Replies, c.Duration, c.Seed)
	pc := c.Filter.Policy
	rep := &Report{
		Audience: c.Audience, Replies: c.Replies, Duration: c.Duration.String(), Curve: string(c.Curve), Seed: c.Seed,
		Nodes: c.Nodes, Backend: c.backend(), Header: c.Filter.Header, Span: c.Duration,
		Clients: c.Clients.String(), ReplyShare: c.ReplyShare,
		Policy: Policy{MinAudience: pc.MinAudience, Limits: limits(pc.Limits),
			Window: pc.Limits.Window.String(), BlockFor: pc.Limits.BlockFor.String(), Action: string(pc.Action), Mode: string(c.Filter.Mode)},
	}
	unprotected := Scenario{ID: "unprotected", Name: "unprotected", Sent: c.Replies, Accepted: c.Replies}
	for _, t := range append([]time.Duration{0}, at...) { // the original, then the replies
		unprotected.Deliveries += int64(c.Audience)
		unprotected.Series = append(unprotected.Series, Point{t.Seconds(), unprotected.Deliveries})
	}

	stores, err := newStores(ctx, c)
	if err != nil {
		return nil, err
	}
	rep.Scenarios = append(rep.Scenarios, unprotected)
	var runErr error
	for _, r := range protected(pc.Limits) {
		fc := c.Filter
		fc.Policy.Limits = r.limits
		res, err := runScenario(ctx, c, fc, stores, newStorm(c, at), log)
		if err != nil {
			runErr = fmt.Errorf("sim: scenario %q: %w", r.name, err)
			break
		}
		res.ID, res.Name = r.id, r.name
		rep.Scenarios = append(rep.Scenarios, res)
	}
	rep.Cleanup, rep.Prefixes = stores.close(ctx)
	if runErr != nil {
		if rep.Cleanup != "" {
			runErr = fmt.Errorf("%w (redis: %s)", runErr, rep.Cleanup)
		}
		return nil, runErr
	}
	return rep, nil
}

// runScenario sends the messages one at a time, in arrival order, each to
// its node, on a fresh store, and tallies the answers.
func runScenario(ctx context.Context, c Config, fc milter.Config, stores *stores, msgs *storm, log *slog.Logger) (res Scenario, err error) {
	st, err := stores.fresh(ctx, c.Audience)
	if err != nil {
		return Scenario{}, err
	}
	fc.StoreTimeout = max(fc.StoreTimeout, storeTimeout)
	clock := newClock()
	obs := &observer{}
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			if stopErr := n.stop(); stopErr != nil {
				log.Warn("sim: stopping a milter node", "err", stopErr)
			}
		}
	}()
	for i := range c.Nodes {
		n, err := startNode(ctx, i, fc, st, clock.now, obs, log)
		if err != nil {
			return Scenario{}, err
		}
		nodes = append(nodes, n)
	}
	res = Scenario{Simulated: true, Limits: limits(fc.Policy.Limits), Sent: msgs.len() - 1}
	var sent []message
	var delivered []int // the replies delivered so far, by index in sent
	threads := map[policy.ThreadID]bool{}
	for i := range msgs.len() {
		if err := ctx.Err(); err != nil {
			return Scenario{}, err
		}
		m := msgs.message(i, sent, delivered)
		sent = append(sent, m)
		clock.set(m.at)
		v, err := nodes[i%len(nodes)].send(m, fmt.Sprintf("SIM%05d", i), fc.Header)
		if err == nil {
			err = obs.failure()
		}
		if err != nil {
			return Scenario{}, fmt.Errorf("message %d (node %d, +%s): %w", i, i%len(nodes)+1, m.at, err)
		}
		if th := obs.lastThread(); th != "" {
			threads[th] = true
		}
		ok := v == verdictAccepted || v == verdictTagged
		if ok {
			res.Deliveries += int64(c.Audience)
		}
		if i > 0 {
			switch {
			case ok:
				delivered = append(delivered, i)
				res.Accepted++
				if v == verdictTagged {
					res.Tagged++
				}
			default:
				res.Refused++
				if res.FirstRefusal == nil {
					s := m.at.Seconds()
					res.FirstRefusal, res.FirstRefusalRule = &s, string(obs.lastRule())
				}
			}
		}
		res.Series = append(res.Series, Point{m.at.Seconds(), res.Deliveries})
	}
	res.Threads = len(threads)
	return res, nil
}

// limits is each limit rule's value in l, by its key.
func limits(l policy.Limits) map[string]int64 {
	m := make(map[string]int64, len(policy.LimitRules))
	for _, r := range policy.LimitRules {
		m[r.Key] = r.Limit(l)
	}
	return m
}

// arrivals returns the n replies' arrival times in [0, d], sorted, to the
// millisecond (Redis keeps milliseconds). For reply i = 1..n:
//
//	burst:   t = -τ·ln(1 - u·(1 - e^(-d/τ))), τ = d/4, u uniform in [0,1)
//	         from the seed: an exponential cut at d, ~64% of the replies in
//	         the first quarter, half of them within the first 17%
//	uniform: t = d·i/n
//	front:   t = d·(i/n)²: half of the replies in the first quarter
func arrivals(c Curve, n int, d time.Duration, seed int64) []time.Duration {
	at := make([]float64, n)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x73746f726d)) // "storm"
	for i := range at {
		x := float64(i+1) / float64(n)
		switch c {
		case Burst:
			const k = 4 // d/τ
			x = -math.Log(1-rng.Float64()*(1-math.Exp(-k))) / k
		case Front:
			x *= x
		}
		at[i] = x
	}
	slices.Sort(at) // burst's draws; the others are sorted already
	out := make([]time.Duration, n)
	for i, x := range at {
		out[i] = min(time.Duration(x*float64(d)).Round(time.Millisecond), d)
	}
	return out
}
