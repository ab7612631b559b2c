package main

// stormguard simulate: the storm simulator (package sim) on this config.

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/sim"
)

func newSimulateCmd(stdout io.Writer) *cobra.Command {
	c := sim.Defaults()
	c.Clients, c.ReplyShare = sim.DefaultMix(), sim.DefaultReplyShare // how people reply, unless the flags say otherwise
	var svg, png string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Replay a reply-all storm against the real filter and store: what gets through with and without protection",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := configFrom(cmd)
			if err != nil {
				return err
			}
			c.Filter = cfg.FilterConfig()
			if cfg.Store.Backend == "redis" {
				rc := cfg.RedisConfig()
				c.Redis = &rc
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			rep, err := sim.Run(cmd.Context(), c, log)
			if err != nil {
				return err
			}
			var wrote []string
			for _, chart := range []struct {
				path   string
				render func(*sim.Report) ([]byte, error)
			}{{svg, sim.SVG}, {png, sim.PNG}} {
				if chart.path == "" {
					continue
				}
				b, err := chart.render(rep)
				if err == nil {
					err = os.WriteFile(chart.path, b, 0o644)
				}
				if err != nil {
					return fmt.Errorf("cannot write the chart: %w", err)
				}
				wrote = append(wrote, chart.path)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			if err := rep.WriteText(stdout); err != nil {
				return err
			}
			if len(wrote) > 0 {
				fmt.Fprintf(stdout, "chart: %s\n", strings.Join(wrote, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Audience, "audience", c.Audience, "members of the list the storm is sent to")
	f.IntVar(&c.Replies, "replies", c.Replies, "reply-alls, each from a different sender")
	f.DurationVar(&c.Duration, "duration", c.Duration, "simulated time the replies arrive in")
	f.StringVar((*string)(&c.Curve), "curve", string(c.Curve), "arrival of the replies: burst (random, most early), uniform (evenly spaced) or front (front-loaded, fixed)")
	f.IntVar(&c.Nodes, "nodes", c.Nodes, "mail nodes, each with its own milter; message i goes to node i mod nodes")
	f.Int64Var(&c.Seed, "seed", c.Seed, "seed of the burst curve, the repliers' clients and whom they answer; the same seed gives the same run")
	f.Var((*mixFlag)(&c.Clients), "clients", "mail clients the repliers write with, by weight: name=weight,... ("+clientNames()+
		"); plain: every reply carries only In-Reply-To and References naming the original (needs --reply-share 0)")
	f.Float64Var(&c.ReplyShare, "reply-share", c.ReplyShare, "share of repliers (0 to 1) who answer a reply picked at random among those delivered so far instead of the original")
	f.StringVar(&svg, "svg", "", "write the chart of cumulative deliveries as SVG to this file")
	f.StringVar(&png, "png", "", "write the chart of cumulative deliveries as PNG to this file")
	f.BoolVar(&asJSON, "json", false, "print the summary and the series as JSON")
	f.String("backend", "", "store backend: memory or redis (default: the config's store.backend)")
	return cmd
}

// mixFlag is --clients: a sim.Mix, or "plain" for none.
type mixFlag sim.Mix

func (m *mixFlag) String() string {
	if len(*m) == 0 {
		return "plain"
	}
	return sim.Mix(*m).String()
}

func (m *mixFlag) Set(s string) error {
	if strings.TrimSpace(s) == "plain" {
		*m = nil
		return nil
	}
	mix, err := sim.ParseMix(s)
	if err != nil {
		return err
	}
	*m = mixFlag(mix)
	return nil
}

func (m *mixFlag) Type() string { return "mix" }

// clientNames are the catalogue's client names, for the help text.
func clientNames() string {
	var names []string
	for _, c := range sim.Clients() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
