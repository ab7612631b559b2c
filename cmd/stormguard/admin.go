package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/cmd/stormguard/internal/daemon"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/store"
)

// The operator's subcommands: storms, show, allow, block, reset, lists and
// mode (storms.go, threads.go, lists.go). They read the same config as
// serve. With Redis they talk to Redis (so they work while every daemon is
// down); with the memory store, whose state lives inside the daemon, to the
// daemon's admin API on http.listen, with the admin token
// (http.admin_token_file). Either way the work is admin.Direct's.
// This file opens the way to the state; the others print what it answers.

// adminTimeout bounds one subcommand's work against Redis or the daemon.
const adminTimeout = 10 * time.Second

// session is one subcommand's way to the site's state.
type session struct {
	cfg    *config.Config
	api    admin.API
	stdout io.Writer
}

// openAdmin loads the config and opens the way to the state: Redis,
// checking that it answers, or the daemon's admin API.
func openAdmin(cmd *cobra.Command, stdout io.Writer) (*session, context.Context, context.CancelFunc, error) {
	cfg, err := configFrom(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), adminTimeout)
	if cfg.Store.Backend != "redis" {
		if ok, why := cfg.AdminServed(); !ok {
			cancel()
			return nil, nil, nil, fmt.Errorf("store.backend is memory: the admin commands talk to the running daemon's admin API on http.listen, but %s", why)
		}
		token, err := admin.ReadToken(cfg.HTTP.AdminTokenFile)
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		api := admin.NewClient(cfg.AdminBaseURL(), token, adminTimeout, userAgent())
		return &session{cfg: cfg, api: api, stdout: stdout}, ctx, cancel, nil
	}
	redis.SetLogger(quietRedis{}) // the command says what failed, in one line
	rc := cfg.RedisConfig()
	rc.Timeout = max(rc.Timeout, 2*time.Second) // an operator can wait longer than the mail path
	st, err := store.OpenRedis(rc)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	if err := st.Ping(ctx); err != nil {
		cancel()
		st.Close()
		return nil, nil, nil, fmt.Errorf("cannot reach Redis at %s: %s", strings.Join(cfg.Redis.Addrs, ","), text.OneLine(errors.Unwrap(err)))
	}
	api, err := admin.NewDirect(cfg.AdminConfig(), st, history.NewRedis(st.Client(), st.Keys()), func(e events.Event) string { return publishNow(cfg, st, e) }, nil)
	if err != nil {
		cancel()
		st.Close()
		return nil, nil, nil, err
	}
	return &session{cfg: cfg, api: api, stdout: stdout}, ctx, func() { cancel(); st.Close() }, nil
}

// quietRedis drops go-redis's own log lines (a failed dial, say), which
// would repeat on stderr what the command reports.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// publishNow sends one event to Redis and the webhook, waiting a little for
// delivery; a failure is a warning, not an error: the change is made.
func publishNow(cfg *config.Config, st store.Store, e events.Event) (warning string) {
	n, err := daemon.NewNotifier(cfg, st, discardLogger(), userAgent(), false)
	if err != nil {
		return "the event was not sent: " + text.OneLine(err)
	}
	n.Emit(e)
	ctx, cancel := context.WithTimeout(context.Background(), max(2*cfg.Alerts.WebhookTimeout, 5*time.Second))
	defer cancel()
	ok := n.Close(ctx)
	for _, o := range n.Stats().Outlets {
		if o.Failed > 0 {
			ok = false
		}
	}
	if !ok {
		return "the event was not delivered to every outlet (Redis channel, webhook)"
	}
	return ""
}

// warn prints a result's warning.
func (a *session) warn(w string) {
	if w != "" {
		fmt.Fprintln(a.stdout, "warning: "+w)
	}
}

// memory reports whether the state is the daemon's memory store.
func (a *session) memory() bool { return a.cfg.Store.Backend != "redis" }

// where names the place site settings are kept, for messages.
func (a *session) where() string {
	if a.memory() {
		return "the daemon's memory store"
	}
	return "Redis"
}

// reach says when a change of a site setting takes effect.
func (a *session) reach() string {
	if a.memory() {
		return "the daemon uses it from the next message, until it restarts (the config file keeps it for good)"
	}
	return fmt.Sprintf("every node uses it within %s (store.refresh)", a.cfg.Store.Refresh)
}

// operator names who runs a subcommand, for its events.
func operator() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if u := os.Getenv(k); u != "" {
			return u
		}
	}
	return "unknown"
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// withAdmin is a command's RunE that opens the admin session (openAdmin)
// for run and closes it when run returns.
func withAdmin(stdout io.Writer, run func(cmd *cobra.Command, a *session, ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a, ctx, done, err := openAdmin(cmd, stdout)
		if err != nil {
			return err
		}
		defer done()
		return run(cmd, a, ctx, args)
	}
}
