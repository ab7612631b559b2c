package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
)

func newCheckCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print the effective settings and where each comes from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("config")
			file, keys, err := config.Sources(path, cmd.Flags())
			if err != nil {
				return err
			}
			if file == "" {
				fmt.Fprintln(stdout, "# no config file; defaults and environment only")
			} else {
				fmt.Fprintf(stdout, "# config file %s is valid\n", file)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Key, k.Value, k.From)
			}
			return tw.Flush()
		},
	}
}
