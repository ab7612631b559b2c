// Command stormguard is a milter daemon for Postfix and Sendmail that stops
// reply-all storms, and the operator's tool to see and steer them.
//
// This package holds the commands only: each reads the configuration and
// calls into the package that does the work. The daemon (serve) is
// internal/daemon; the decisions live in policy, the state in store, the
// protocol glue in milter, events and their delivery in events, and the
// operator's work on the state in admin.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs one command line and returns the exit code. Tests call it
// directly.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "stormguard: %v\n", err)
		return 1
	}
	return 0
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "stormguard",
		Short:         "A milter that stops reply-all storms",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("config", "", "config file (default "+config.DefaultFile+" if present)")
	root.AddCommand(newServeCmd(stderr), newCheckCmd(stdout),
		newStormsCmd(stdout), newShowCmd(stdout),
		newOverrideCmd(stdout, "allow"), newOverrideCmd(stdout, "block"), newOverrideCmd(stdout, "reset"),
		newListsCmd(stdout), newModeCmd(stdout), newSimulateCmd(stdout), newQueueCmd(stdout))
	root.AddCommand(newPostersCmd(stdout)) // posters.go
	root.AddCommand(newVersionCmd(root, stdout))
	return root
}

// configFrom loads the configuration named by the command's --config flag.
func configFrom(cmd *cobra.Command) (*config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	return config.Load(path, cmd.Flags())
}

func newServeCmd(logOut io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the milter daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := configFrom(cmd)
			if err != nil {
				return err
			}
			log, level := daemon.NewLogger(cfg, logOut)
			return daemon.Run(cmd.Context(), cfg, log, daemon.Options{Version: version, UserAgent: userAgent(),
				Reload: func() (*config.Config, error) { return configFrom(cmd) }, Level: level})
		},
	}
	config.AddFlags(cmd.Flags()) // --listen, --log-level, --backend
	return cmd
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// userAgent names this build in webhook POSTs and admin API requests.
func userAgent() string { return "stormguard/" + version }
