package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

func newCheckCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print the effective settings and where each comes from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("config")
			_, v, err := loadConfig(path, path != "", cmd.Flags())
			if err != nil {
				return err
			}
			file := v.ConfigFileUsed()
			if file == "" {
				fmt.Fprintln(stdout, "# no config file; defaults and environment only")
			} else {
				fmt.Fprintf(stdout, "# config file %s is valid\n", file)
			}
			printEffective(stdout, v)
			return nil
		},
	}
}

// printEffective prints every key with its value and its source: flag, env,
// file or default.
func printEffective(w io.Writer, v *viper.Viper) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
	sorted := slices.SortedFunc(slices.Values(settings), func(a, b setting) int { return strings.Compare(a.Key, b.Key) })
	for _, s := range sorted {
		val := fmt.Sprint(v.Get(s.Key))
		if s.Secret && val != "" {
			val = "********"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, val, source(v, s))
	}
	tw.Flush()
}

func source(v *viper.Viper, s setting) string {
	if _, ok := os.LookupEnv(s.Env); ok {
		return "env " + s.Env
	}
	if v.ConfigFileUsed() != "" && v.InConfig(s.Key) {
		return "file"
	}
	return "default"
}
