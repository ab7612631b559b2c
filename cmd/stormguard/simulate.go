package main

// stormguard simulate: replay a reply-all storm against the real filter
// (milter.Filter served by milter.Server, driven over loopback TCP by
// go-milter's client, as Postfix drives it) and the real store, once per
// scenario on fresh state, and say what got through. The messages, the
// simulated mail nodes, their clock and the stores are simnode.go's; the
// chart is chart.go's and chartpng.go's.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/policy"
)

// The simulated storm's addresses: a reserved domain, so no config's
// exempt senders or list sizes match them by accident.
const (
	simDomain  = "simulate.invalid"
	simList    = "all-staff@" + simDomain
	simBoss    = "boss@" + simDomain
	simSubject = "Test message, please ignore"
	maxSimMsgs = 100000 // replies per run: the messages go one at a time
	maxNodes   = 1000   // each node is a listener and a connection
)

// curve is how the replies' arrival times are spread over --duration.
type curve string

const (
	curveBurst   curve = "burst"
	curveUniform curve = "uniform"
	curveFront   curve = "front"
)

// simOptions are simulate's flags.
type simOptions struct {
	audience, replies, nodes int
	duration                 time.Duration
	curve                    string
	seed                     int64
	svg, png                 string
	json                     bool
}

func (o simOptions) validate() error {
	switch {
	case o.audience < 1:
		return fmt.Errorf("--audience must be at least 1, got %d", o.audience)
	case o.replies < 0:
		return fmt.Errorf("--replies must not be negative, got %d", o.replies)
	case o.replies > maxSimMsgs:
		return fmt.Errorf("--replies must be at most %d, got %d", maxSimMsgs, o.replies)
	case o.nodes < 1:
		return fmt.Errorf("--nodes must be at least 1, got %d", o.nodes)
	case o.nodes > maxNodes:
		return fmt.Errorf("--nodes must be at most %d, got %d", maxNodes, o.nodes)
	case o.duration < 0:
		return fmt.Errorf("--duration must not be negative, got %s", o.duration)
	}
	switch curve(o.curve) {
	case curveBurst, curveUniform, curveFront:
	default:
		return fmt.Errorf("--curve %q: want burst, uniform or front", o.curve)
	}
	return nil
}

func newSimulateCmd(stdout io.Writer) *cobra.Command {
	var o simOptions
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Replay a reply-all storm against the real filter and store: what gets through with and without protection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			cfg, err := configFrom(cmd)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			rep, err := simulate(cmd.Context(), cfg, o, log)
			if err != nil {
				return err
			}
			var wrote []string
			for _, c := range []struct {
				path   string
				render func(*simReport) ([]byte, error)
			}{{o.svg, renderSVG}, {o.png, renderPNG}} {
				if c.path == "" {
					continue
				}
				b, err := c.render(rep)
				if err == nil {
					err = os.WriteFile(c.path, b, 0o644)
				}
				if err != nil {
					return fmt.Errorf("cannot write the chart: %w", err)
				}
				wrote = append(wrote, c.path)
			}
			if o.json {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printReport(stdout, rep, wrote)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.audience, "audience", 850000, "members of the list the storm is sent to")
	f.IntVar(&o.replies, "replies", 80, "reply-alls, each from a different sender")
	f.DurationVar(&o.duration, "duration", 76*time.Minute, "simulated time the replies arrive in")
	f.StringVar(&o.curve, "curve", string(curveBurst), "arrival of the replies: burst (random, most early), uniform (evenly spaced) or front (front-loaded, fixed)")
	f.IntVar(&o.nodes, "nodes", 1, "mail nodes, each with its own milter; message i goes to node i mod nodes")
	f.Int64Var(&o.seed, "seed", 1, "seed of the burst curve; the same seed gives the same run")
	f.StringVar(&o.svg, "svg", "", "write the chart of cumulative deliveries as SVG to this file")
	f.StringVar(&o.png, "png", "", "write the chart of cumulative deliveries as PNG to this file")
	f.BoolVar(&o.json, "json", false, "print the summary and the series as JSON")
	f.String("backend", "", "store backend: memory or redis (default: the config's store.backend)")
	return cmd
}

// arrivals returns the n replies' arrival times in [0, d], sorted, to the
// millisecond (Redis keeps milliseconds). For reply i = 1..n:
//
//	burst:   t = -τ·ln(1 - u·(1 - e^(-d/τ))), τ = d/4, u uniform in [0,1)
//	         from the seed: an exponential cut at d, ~64% of the replies in
//	         the first quarter, half of them within the first 17%
//	uniform: t = d·i/n
//	front:   t = d·(i/n)²: half of the replies in the first quarter
func arrivals(c curve, n int, d time.Duration, seed int64) []time.Duration {
	at := make([]float64, n)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x73746f726d)) // "storm"
	for i := range at {
		x := float64(i+1) / float64(n)
		switch c {
		case curveBurst:
			const k = 4 // d/τ
			x = -math.Log(1-rng.Float64()*(1-math.Exp(-k))) / k
		case curveFront:
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

// simReport is what simulate prints, as a table or as JSON.
type simReport struct {
	Audience  int         `json:"audience"`
	Replies   int         `json:"replies"`
	Duration  string      `json:"duration"`
	Curve     string      `json:"curve"`
	Seed      int64       `json:"seed"`
	Nodes     int         `json:"nodes"`
	Backend   string      `json:"backend"`
	Policy    simPolicy   `json:"policy"`
	Scenarios []simResult `json:"scenarios"`
	// Cleanup says what became of the Redis keys the run wrote.
	Cleanup string `json:"redis_cleanup,omitempty"`

	span     time.Duration // --duration, the chart's time axis
	header   string        // policy.header, for the table
	prefixes []string      // the private Redis prefixes, for the table only (random)
}

type simPolicy struct {
	MinAudience    int    `json:"min_audience"`
	MaxReplies     int    `json:"max_replies"`
	DeliveryBudget int64  `json:"delivery_budget"`
	Window         string `json:"window"`
	BlockFor       string `json:"block_for"`
	Action         string `json:"action"`
	Mode           string `json:"mode"`
}

// simResult is one scenario's outcome.
type simResult struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Simulated      bool   `json:"simulated"` // false: computed (unprotected)
	MaxReplies     int    `json:"max_replies"`
	DeliveryBudget int64  `json:"delivery_budget"`
	Sent           int    `json:"replies_sent"`
	Accepted       int    `json:"accepted"` // replies delivered, tagged ones included
	Refused        int    `json:"refused"`  // rejected or tempfailed
	Tagged         int    `json:"tagged"`   // delivered with the monitor header
	Deliveries     int64  `json:"deliveries"`
	// FirstRefusal is the simulated time of the first refused reply; nil: none.
	FirstRefusal     *float64   `json:"first_refusal_seconds"`
	FirstRefusalRule string     `json:"first_refusal_rule,omitempty"`
	Series           []simPoint `json:"series"`
}

// simPoint is the cumulative deliveries after the message that arrived at Seconds.
type simPoint struct {
	Seconds    float64 `json:"seconds"`
	Deliveries int64   `json:"deliveries"`
}

// simulate runs the scenarios: unprotected is computed, the others run.
func simulate(ctx context.Context, cfg *Config, o simOptions, log *slog.Logger) (*simReport, error) {
	msgs := stormMessages(arrivals(curve(o.curve), o.replies, o.duration, o.seed))
	pc := cfg.policyConfig()
	rep := &simReport{
		Audience: o.audience, Replies: o.replies, Duration: o.duration.String(), Curve: o.curve, Seed: o.seed,
		Nodes: o.nodes, Backend: cfg.Store.Backend, header: cfg.Policy.Header, span: o.duration,
		Policy: simPolicy{MinAudience: pc.MinAudience, MaxReplies: pc.Limits.MaxReplies, DeliveryBudget: pc.Limits.DeliveryBudget,
			Window: pc.Limits.Window.String(), BlockFor: pc.Limits.BlockFor.String(), Action: string(pc.Action), Mode: cfg.Mode},
	}
	unprotected := simResult{ID: "unprotected", Name: "unprotected", Sent: o.replies, Accepted: o.replies}
	for _, m := range msgs {
		unprotected.Deliveries += int64(o.audience)
		unprotected.Series = append(unprotected.Series, simPoint{m.at.Seconds(), unprotected.Deliveries})
	}
	countRule := pc
	countRule.Limits.DeliveryBudget = 0
	runs := []struct {
		id, name string
		pc       policy.Config
	}{{"count_rule", "count rule only", countRule}, {"stormguard", "stormguard", pc}}

	stores, err := newSimStores(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rep.Scenarios = append(rep.Scenarios, unprotected)
	var runErr error
	for _, r := range runs {
		res, err := runScenario(ctx, cfg, r.pc, stores, msgs, o, log)
		if err != nil {
			runErr = fmt.Errorf("scenario %q: %w", r.name, err)
			break
		}
		res.ID, res.Name = r.id, r.name
		rep.Scenarios = append(rep.Scenarios, res)
	}
	rep.Cleanup, rep.prefixes = stores.close(ctx)
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
func runScenario(ctx context.Context, cfg *Config, pc policy.Config, stores *simStores, msgs []simMessage, o simOptions, log *slog.Logger) (simResult, error) {
	st, err := stores.fresh(ctx, o.audience)
	if err != nil {
		return simResult{}, err
	}
	fc := cfg.filterConfig()
	fc.Policy = pc
	fc.StoreTimeout = max(fc.StoreTimeout, simStoreTimeout)
	clock := newSimClock()
	obs := &simObserver{}
	var nodes []*simNode
	defer func() {
		for _, n := range nodes {
			if err := n.stop(); err != nil {
				log.Warn("simulate: stopping a milter node", "err", err)
			}
		}
	}()
	for i := range o.nodes {
		n, err := startSimNode(ctx, i, fc, st, clock.now, obs, log)
		if err != nil {
			return simResult{}, err
		}
		nodes = append(nodes, n)
	}
	res := simResult{Simulated: true, MaxReplies: pc.Limits.MaxReplies, DeliveryBudget: pc.Limits.DeliveryBudget, Sent: len(msgs) - 1}
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			return simResult{}, err
		}
		clock.set(m.at)
		v, err := nodes[i%len(nodes)].send(m, fmt.Sprintf("SIM%05d", i), fc.Header)
		if err == nil {
			err = obs.failure()
		}
		if err != nil {
			return simResult{}, fmt.Errorf("message %d (node %d, +%s): %w", i, i%len(nodes)+1, m.at, err)
		}
		delivered := v == verdictAccepted || v == verdictTagged
		if delivered {
			res.Deliveries += int64(o.audience)
		}
		if i > 0 {
			switch {
			case delivered:
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
		res.Series = append(res.Series, simPoint{m.at.Seconds(), res.Deliveries})
	}
	return res, nil
}

// printReport is the table.
func printReport(w io.Writer, rep *simReport, charts []string) error {
	p := rep.Policy
	fmt.Fprintf(w, "simulated storm: 1 original + %d reply-alls to a list of %s over %s (curve %s, seed %d), %d %s, %s store\n",
		rep.Replies, thousands(int64(rep.Audience)), rep.Duration, rep.Curve, rep.Seed, rep.Nodes, plural(rep.Nodes, "node"), rep.Backend)
	fmt.Fprintf(w, "policy: min_audience %s, max_replies %d, delivery_budget %s, window %s, block_for %s, action %s, mode %s\n\n",
		thousands(int64(p.MinAudience)), p.MaxReplies, thousands(p.DeliveryBudget), p.Window, p.BlockFor, p.Action, p.Mode)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tREPLIES\tACCEPTED\tREFUSED\tDELIVERIES\tFIRST REFUSAL")
	var tagged []string
	for _, s := range rep.Scenarios {
		first := "-"
		if s.FirstRefusal != nil {
			first = "+" + time.Duration(*s.FirstRefusal*float64(time.Second)).Round(time.Second).String()
			if s.FirstRefusalRule != "" {
				first += " (" + s.FirstRefusalRule + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Sent, s.Accepted, s.Refused, thousands(s.Deliveries), first)
		if s.Tagged > 0 {
			tagged = append(tagged, fmt.Sprintf("%s %d", s.Name, s.Tagged))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ndeliveries: %s mailboxes for the original and for each reply delivered. unprotected is computed;\n", thousands(int64(rep.Audience)))
	fmt.Fprintf(w, "the others ran through %d real milter %s on a fresh %s store (count rule only: delivery_budget 0).\n",
		rep.Nodes, plural(rep.Nodes, "node"), rep.Backend)
	if len(tagged) > 0 {
		fmt.Fprintf(w, "monitor: replies delivered with the %s header instead of refused: %s.\n", rep.header, strings.Join(tagged, ", "))
	}
	if rep.Cleanup != "" {
		fmt.Fprintf(w, "redis: private prefixes %s; %s\n", strings.Join(rep.prefixes, ", "), rep.Cleanup)
	}
	if len(charts) > 0 {
		fmt.Fprintf(w, "chart: %s\n", strings.Join(charts, ", "))
	}
	return nil
}

// thousands formats n with commas: 68,850,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
