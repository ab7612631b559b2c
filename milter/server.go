package milter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/netlimit"
)

// Server is the milter daemon: go-milter's server with stormguard's guard
// and callbacks.
type Server struct {
	f   *Filter
	srv *gomilter.Server
	log *slog.Logger
	lim Limits

	// Conns counts the milter connections: open, refused beyond
	// MaxSessions, accept errors retried.
	Conns netlimit.Stats
}

// Limits bound what the daemon holds for its MTAs' connections.
type Limits struct {
	// MaxSessions caps the open milter connections (one per SMTP session
	// with Postfix and Sendmail). Beyond it a new connection is closed
	// unanswered, logged and counted; the MTA applies its default action
	// (milter_default_action, Sendmail's F=) to that SMTP session.
	MaxSessions int
	// IdleTimeout is the longest silence from the MTA, between messages
	// or within one, before its connection is closed.
	IdleTimeout time.Duration
}

// Default limits.
//
// 500 sessions leave half of the 1,024 descriptors a process gets under
// the usual soft limit (systemd's default, ulimit -n 1024) for Redis
// connections, the HTTP server (http.max_connections) and the rest, and are
// 5 times what one Postfix opens by default (default_process_limit = 100
// smtpd processes, one milter connection each).
//
// Postfix keeps its milter connection open, and silent, while the SMTP
// client is silent, and ends the SMTP session after smtpd_timeout (300 s;
// 10 s under stress): no live Postfix session is silent longer than that, so
// 330 s never cuts one off, against 15 minutes before.
const (
	DefaultMaxSessions = 500
	DefaultIdleTimeout = 330 * time.Second
)

// DefaultLimits are the limits with nothing configured.
func DefaultLimits() Limits {
	return Limits{MaxSessions: DefaultMaxSessions, IdleTimeout: DefaultIdleTimeout}
}

// Validate checks the limits.
func (l Limits) Validate() error {
	if l.MaxSessions < 1 {
		return fmt.Errorf("milter.max_sessions: must be at least 1, got %d", l.MaxSessions)
	}
	if l.IdleTimeout < time.Second {
		return fmt.Errorf("milter.idle_timeout: must be at least 1s, got %s", l.IdleTimeout)
	}
	return nil
}

// libLog receives go-milter's own warnings (bad packets, broken
// connections); it is the logger of the newest server.
var libLog atomic.Pointer[slog.Logger]

func init() {
	gomilter.LogWarning = func(format string, v ...any) {
		if l := libLog.Load(); l != nil {
			l.Warn("milter protocol: " + fmt.Sprintf(format, v...))
		}
	}
}

// Protocols is what stormguard requires of the MTA: no body, no unknown
// commands. Skipping CONNECT, HELO or DATA as well (OptNoConnect/OptNoHelo/
// OptNoData) makes Postfix stall ~40 ms per message on TCP (20 against 163
// msg/s at concurrency 1, docs/performance.md), so they are received, and
// not answered (NoReplies).
const Protocols = gomilter.OptNoBody | gomilter.OptNoUnknown

// NoReplies are the v6 "no reply" flags for every event stormguard only
// records: it decides at end of headers and answers there and at end of
// message. They are asked for when the MTA offers them (Postfix 2.6+ and
// Sendmail 8.14+ do), and stormguard answers every event when it does not.
// Without a reply to wait for, Postfix sends the next event at once: about
// 7 fewer packets each way per message. On TCP that needs QuickAck, or
// Postfix (Nagle on) waits 40 ms for the milter's delayed ACK.
const NoReplies = gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply |
	gomilter.OptNoRcptReply | gomilter.OptNoDataReply | gomilter.OptNoHeaderReply

// Negotiation is every server option stormguard uses but the milter itself:
// the events (protocols), the one action (add a header, for monitor mode)
// and the macros. The benchmarks' no-op baseline negotiates the same.
func Negotiation(protocols gomilter.OptProtocol) []gomilter.Option {
	return []gomilter.Option{
		gomilter.WithProtocols(protocols),
		gomilter.WithAction(gomilter.OptAddHeader),
		// Postfix replaces every stage's macro list once a filter asks for
		// any, so ask for everything used, where it is used.
		gomilter.WithMacroRequest(gomilter.StageMail, []gomilter.MacroName{gomilter.MacroAuthAuthen, gomilter.MacroDaemonName}),
		gomilter.WithMacroRequest(gomilter.StageRcpt, []gomilter.MacroName{gomilter.MacroQueueId}),
		gomilter.WithMacroRequest(gomilter.StageEOH, []gomilter.MacroName{gomilter.MacroQueueId}),
		gomilter.WithMacroRequest(gomilter.StageEOM, []gomilter.MacroName{gomilter.MacroQueueId}),
		// A silent MTA connection is dropped after this long without a
		// packet (see DefaultIdleTimeout); NewServerWith sets the configured one.
		gomilter.WithReadTimeout(DefaultIdleTimeout),
	}
}

// negotiateOffered negotiates as go-milter does by default (the MTA's
// protocol version; every protocol option and action asked for must be
// offered), except that the quarantine action and the NoReplies flags are
// taken only if offered.
func negotiateOffered(mtaVersion, _ uint32, mtaActions, milterActions gomilter.OptAction,
	mtaProtocol, milterProtocol gomilter.OptProtocol, offered gomilter.DataSize,
) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	if need := milterActions &^ gomilter.OptQuarantine; mtaActions&need != need {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: MTA does not offer required actions. offered: %q requested: %q", mtaActions, need)
	}
	if need := milterProtocol &^ NoReplies; mtaProtocol&need != need {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: MTA does not offer required protocol options. offered: %q requested: %q", mtaProtocol, need)
	}
	return mtaVersion, milterActions & mtaActions, milterProtocol &^ (NoReplies &^ mtaProtocol), offered, nil
}

// NewServer makes a server whose connections are answered by f, with the
// default limits.
func NewServer(f *Filter) *Server { return NewServerWith(f, DefaultLimits()) }

// NewServerWith makes a server whose connections are answered by f, within
// lim (validated by the caller).
func NewServerWith(f *Filter, lim Limits) *Server {
	libLog.Store(f.log)
	opts := append(Negotiation(Protocols|NoReplies), gomilter.WithNegotiationCallback(negotiateOffered))
	if f.start.Holds() {
		// Holding needs the quarantine action. It is asked for, not
		// required: an MTA that does not offer it still gets every other
		// verdict, and a message to hold is tempfailed instead
		// (session.EndOfMessage), where a failed negotiation would leave
		// all its mail to the MTA's default action.
		opts = append(opts, gomilter.WithAction(gomilter.OptQuarantine))
	}
	srv := gomilter.NewServer(append(opts,
		gomilter.WithReadTimeout(lim.IdleTimeout),
		gomilter.WithMilter(func() gomilter.Milter { return &session{f: f} }))...)
	return &Server{f: f, srv: srv, log: f.log, lim: lim}
}

// Serve answers milter connections on ln until Shutdown. At most
// MaxSessions are open at once; accept errors (out of file descriptors)
// are retried, never returned. Every connection goes through the packet
// guard first.
func (s *Server) Serve(ln net.Listener) error {
	// Quick ACKs on the raw connection: the wrappers above it hide its
	// socket.
	limited := netlimit.New(QuickAckListener(ln), "milter", s.lim.MaxSessions, &s.Conns, s.log)
	err := s.srv.Serve(&guardListener{Listener: limited, log: s.log, rejected: &s.f.Stats.BadPackets})
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for the MTA to close its connections and
// force-closes the rest when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// Listen opens a listener from a Postfix-style address: "inet:HOST:PORT",
// "inet:PORT@HOST" (Sendmail's order), "unix:/path" or "local:/path". A unix
// socket gets mode. A stale socket file at the path (nothing listening, as
// a killed daemon leaves it) is replaced; a socket another process answers
// on, or a file that is not a socket, is an error and is left alone.
func Listen(spec string, mode os.FileMode) (net.Listener, error) {
	network, addr, err := ParseListen(spec)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := removeStaleSocket(addr); err != nil {
			return nil, fmt.Errorf("listen %s: %w", spec, err)
		}
		ln, err := net.Listen("unix", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", spec, err)
		}
		if err := os.Chmod(addr, mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: chmod %o: %w", spec, mode, err)
		}
		return ln, nil
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	return ln, nil
}

// removeStaleSocket removes the socket file at path if nothing listens on
// it. It refuses when another process answers on it (a running daemon,
// whose socket a second one must not take over) and when path is not a
// socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket (%s); not removing it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("another process answers on %s (is stormguard already running?); not taking over its socket", path)
	case errors.Is(err, syscall.ECONNREFUSED): // stale: nobody listens
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist): // removed meanwhile
		return nil
	default: // e.g. a full backlog or no permission: maybe alive, so leave it
		return fmt.Errorf("cannot tell whether another process answers on %s: %w; not removing it", path, err)
	}
}

// ParseListen turns a Postfix-style milter address into a Go network and address.
func ParseListen(spec string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(strings.TrimSpace(spec), ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("listen: %q is not inet:HOST:PORT or unix:/path", spec)
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("listen: %q: the unix socket path must be absolute", spec)
		}
		return "unix", rest, nil
	case "inet", "inet4", "inet6":
		if port, host, ok := strings.Cut(rest, "@"); ok { // Sendmail: port@host
			rest = net.JoinHostPort(host, port)
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil || port == "" {
			return "", "", fmt.Errorf("listen: %q: want inet:HOST:PORT (%v)", spec, err)
		}
		network := "tcp"
		switch strings.ToLower(kind) {
		case "inet4":
			network = "tcp4"
		case "inet6":
			network = "tcp6"
		}
		return network, net.JoinHostPort(host, port), nil
	default:
		return "", "", fmt.Errorf("listen: %q: unknown transport %q (use inet or unix)", spec, kind)
	}
}
