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
	f.Int64Var(&c.Seed, "seed", c.Seed, "seed of the burst curve; the same seed gives the same run")
	f.StringVar(&svg, "svg", "", "write the chart of cumulative deliveries as SVG to this file")
	f.StringVar(&png, "png", "", "write the chart of cumulative deliveries as PNG to this file")
	f.BoolVar(&asJSON, "json", false, "print the summary and the series as JSON")
	f.String("backend", "", "store backend: memory or redis (default: the config's store.backend)")
	return cmd
}
