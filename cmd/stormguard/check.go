package main

import (
	"fmt"
	"io"
	"os"
	"sort"
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
	keys := make([]string, 0, len(settings))
	for _, s := range settings {
		keys = append(keys, s.Key)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := fmt.Sprint(v.Get(k))
		if strings.Contains(k, "password") && val != "" {
			val = "********"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k, val, source(v, k))
	}
	tw.Flush()
}

func source(v *viper.Viper, key string) string {
	env := "STORMGUARD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
	if _, ok := os.LookupEnv(env); ok {
		return "env " + env
	}
	if v.ConfigFileUsed() != "" && v.InConfig(key) {
		return "file"
	}
	return "default"
}
