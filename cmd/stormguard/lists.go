package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
)

func newListsCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lists",
		Short: "Show list sizes (the store's: Redis hash stormguard:lists or the daemon's memory; and the config file's); lists set ADDR N, lists delete ADDR, lists sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			lists, err := a.api.Lists(ctx)
			if err != nil {
				return err
			}
			if len(lists) == 0 {
				fmt.Fprintln(stdout, "no lists registered; every address counts 1 (stormguard lists set ADDR MEMBERS)")
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LIST\tMEMBERS\tFROM")
			for _, l := range lists {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", l.List, l.Members, l.From)
			}
			return tw.Flush()
		},
	}
	set := &cobra.Command{
		Use:   "set ADDRESS MEMBERS",
		Short: "Register a list's member count in the store (Redis: every node within store.refresh; memory: the daemon at once)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n <= 0 {
				return fmt.Errorf("members %q: want a positive whole number", args[1])
			}
			if err := admin.CheckList(args[0], n); err != nil {
				return err
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			l, err := a.api.SetList(ctx, args[0], n)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "list %s: %d members; %s\n", l.List, l.Members, a.reach())
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete ADDRESS",
		Short: "Remove a list's member count from the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			left, err := a.api.DeleteList(ctx, args[0])
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("list %s: removed from %s", left.List, a.where())
			if left.Members > 0 {
				msg += fmt.Sprintf("; the config file still says %d members", left.Members)
			}
			fmt.Fprintln(stdout, msg)
			return nil
		},
	}
	cmd.AddCommand(set, del, newListsSyncCmd(stdout))
	return cmd
}

func newModeCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "mode [enforce|monitor|off|default]",
		Short: "Show or set the site-wide mode (Redis key stormguard:mode for every node, or the daemon's with the memory store)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if _, err := admin.ParseMode(args[0]); err != nil || args[0] == "" {
					return fmt.Errorf("mode %q: want enforce, monitor, off or default", args[0])
				}
			}
			a, ctx, done, err := openAdmin(cmd, stdout)
			if err != nil {
				return err
			}
			defer done()
			if len(args) == 0 {
				m, err := a.api.Mode(ctx)
				if err != nil {
					return err
				}
				switch {
				case m.From != "config" && a.memory():
					fmt.Fprintf(stdout, "%s (set on the daemon with stormguard mode)\n", m.Mode)
				case m.From != "config":
					fmt.Fprintf(stdout, "%s (stormguard:mode)\n", m.Mode)
				case a.memory():
					fmt.Fprintf(stdout, "%s (the config's mode; none is set on the daemon)\n", m.Mode)
				default:
					fmt.Fprintf(stdout, "%s (the config's mode; stormguard:mode is not set)\n", m.Mode)
				}
				return nil
			}
			m, err := a.api.SetMode(ctx, args[0], operator())
			if err != nil {
				return err
			}
			shown := m.Mode
			if m.From == "config" {
				shown += " (the config's default)"
			}
			fmt.Fprintf(stdout, "site mode: %s; %s\n", shown, a.reach())
			a.warn(m.Warning)
			return nil
		},
	}
}
