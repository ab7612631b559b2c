package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/text"
)

// The sender gate's allowed posters: gate.posters in the config file plus
// the store's set (Redis set stormguard:posters, or the daemon's memory).

func newPostersCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "posters",
		Short: "Show who may post past the sender gate (gate.posters and the store's: Redis set stormguard:posters or the daemon's memory); posters add X, posters delete X",
		Args:  cobra.NoArgs,
		RunE: withAdmin(stdout, func(cmd *cobra.Command, a *session, ctx context.Context, _ []string) error {
			posters, err := a.api.Posters(ctx)
			if err != nil {
				return err
			}
			if a.cfg.Gate.MinAudience <= 0 {
				fmt.Fprintln(stdout, "note: this config has the sender gate off (gate.min_audience 0); the posters apply where it is on")
			}
			if len(posters) == 0 {
				fmt.Fprintln(stdout, "no allowed posters: only exempt senders may send to a gated audience (stormguard posters add SENDER|@DOMAIN|LOGIN)")
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POSTER\tFROM")
			for _, p := range posters {
				// Anything in the store may have been typed by anyone
				// with redis-cli: no terminal escapes.
				fmt.Fprintf(tw, "%s\t%s\n", text.Clean(p.Poster, 0), strings.Join(p.From, ", "))
			}
			return tw.Flush()
		}),
	}
	add := posterCmd(stdout, "add SENDER|@DOMAIN|LOGIN",
		"Allow a sender, a domain or a SASL login to post past the sender gate (Redis: every node within store.refresh; memory: the daemon at once)",
		func(ctx context.Context, a *session, poster string) error {
			p, err := a.api.AddPoster(ctx, poster)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "poster %s: allowed; %s\n", p.Poster, a.reach())
			return nil
		})
	del := posterCmd(stdout, "delete SENDER|@DOMAIN|LOGIN", "Remove an allowed poster from the store",
		func(ctx context.Context, a *session, poster string) error {
			left, err := a.api.DeletePoster(ctx, poster)
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("poster %s: removed from %s", left.Poster, a.where())
			if len(left.From) > 0 {
				msg += "; the config file (gate.posters) still allows it"
			}
			fmt.Fprintln(stdout, msg)
			return nil
		})
	cmd.AddCommand(add, del)
	return cmd
}

// posterCmd is a posters subcommand that changes one poster: the argument
// is checked before anything is opened, then run does the change.
func posterCmd(stdout io.Writer, use, short string, run func(ctx context.Context, a *session, poster string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.CheckPoster(args[0]); err != nil {
				return err
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			return run(ctx, a, args[0])
		},
	}
}
