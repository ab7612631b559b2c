// Package netlimit bounds what a listener lets in: at most a fixed number of
// open connections, and optionally of open connections from one client
// address (beyond either a new connection is closed at once, logged at
// most every few seconds and counted), and accept errors that pass (out of
// file descriptors, a connection reset before it was accepted) retried with
// a growing pause instead of returned, so a server's Serve never ends on
// them.
//
// It knows nothing of the protocols spoken on the connections and does not
// read or write them.
package netlimit

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Stats are a listener's counters; safe for concurrent use.
type Stats struct {
	Open         atomic.Int64  // connections accepted and not yet closed
	Refused      atomic.Uint64 // connections closed at once because max were open, in all or from their client
	AcceptErrors atomic.Uint64 // accept errors retried (EMFILE, ENFILE, …)
}

// Backoff after a failed accept: net/http's, 5 ms doubling to 1 s.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// logEvery is the least time between two log lines about refusals, and
// between two about accept errors.
const logEvery = 10 * time.Second

// Listener is a net.Listener with a cap on open connections and accept
// errors retried. Its connections count as open until their Close.
type Listener struct {
	net.Listener
	max   int
	name  string // in log lines: "milter", "http"
	stats *Stats
	log   *slog.Logger

	slots     chan struct{} // one token per open connection
	perClient int           // open connections from one client address at most; 0: no cap

	done      chan struct{} // closed by Close: a pause between retries ends
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	clients map[string]int // client address -> its open connections (with perClient)

	lastRefusedLog atomic.Int64 // unix nanoseconds
	lastErrLog     atomic.Int64
}

// New wraps ln. max < 1 means no cap. stats may be shared with a metrics
// collector; log may be nil.
func New(ln net.Listener, name string, max int, stats *Stats, log *slog.Logger) *Listener {
	if stats == nil {
		stats = &Stats{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Listener{Listener: ln, max: max, name: name, stats: stats, log: log, done: make(chan struct{})}
	if max > 0 {
		l.slots = make(chan struct{}, max)
	}
	return l
}

// LimitPerClient caps the connections open from one client address (a
// TCP peer's IP; other connections are not counted) at n, so that one
// client cannot take every slot; n < 1: no cap. Call it before Accept.
func (l *Listener) LimitPerClient(n int) *Listener {
	l.perClient = max(n, 0)
	l.clients = map[string]int{}
	return l
}

// Accept returns the next connection the caps let in. It returns an error
// only when the listener is closed or fails for good.
func (l *Listener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !Temporary(err) {
				return nil, err
			}
			pause = min(max(2*pause, minBackoff), maxBackoff)
			l.stats.AcceptErrors.Add(1)
			if l.every(&l.lastErrLog) {
				l.log.Error("cannot accept a connection; retrying", "listener", l.name, "err", err,
					"retry_in", pause.String(), "open", l.stats.Open.Load(), "accept_errors", l.stats.AcceptErrors.Load())
			}
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		pause = 0
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			default:
				// Counted and logged before the close, so whoever sees
				// the connection closed also sees it counted.
				l.stats.Refused.Add(1)
				if l.every(&l.lastRefusedLog) {
					l.log.Warn("too many connections; closing new ones", "listener", l.name, "limit", l.max,
						"remote", c.RemoteAddr().String(), "refused", l.stats.Refused.Load())
				}
				_ = c.Close()
				continue
			}
		}
		client, ok := l.takeClient(c)
		if !ok {
			if l.slots != nil {
				<-l.slots
			}
			l.stats.Refused.Add(1)
			if l.every(&l.lastRefusedLog) {
				l.log.Warn("too many connections from one client; closing its new ones", "listener", l.name,
					"limit_per_client", l.perClient, "remote", c.RemoteAddr().String(), "refused", l.stats.Refused.Load())
			}
			_ = c.Close()
			continue
		}
		l.stats.Open.Add(1)
		return &conn{Conn: c, l: l, client: client}, nil
	}
}

// takeClient counts c against its client's cap and returns the client's
// address ("" when not counted), or false when the client is at its cap.
func (l *Listener) takeClient(c net.Conn) (string, bool) {
	if l.perClient < 1 {
		return "", true
	}
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return "", true
	}
	client := a.IP.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client] >= l.perClient {
		return "", false
	}
	l.clients[client]++
	return client, true
}

// dropClient gives back a connection of client's.
func (l *Listener) dropClient(client string) {
	if client == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client] <= 1 {
		delete(l.clients, client)
		return
	}
	l.clients[client]--
}

// Close closes the listener and ends a pause between retries.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// every reports whether a log line is due, and if so marks it sent.
func (l *Listener) every(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return (prev == 0 || now-prev >= int64(logEvery)) && last.CompareAndSwap(prev, now)
}

// Temporary reports whether an accept error passes: the process or system
// is out of descriptors or buffers, or one connection failed before it was
// accepted. A closed listener's error is not temporary.
func Temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// conn gives its slot back on its first Close.
type conn struct {
	net.Conn
	l      *Listener
	client string // counted against its client's cap; "": not counted
	once   sync.Once
}

func (c *conn) Close() error {
	// The slot is given back before the close, so whoever sees the
	// connection closed also sees it gone from Open.
	c.once.Do(func() {
		c.l.stats.Open.Add(-1)
		c.l.dropClient(c.client)
		if c.l.slots != nil {
			<-c.l.slots
		}
	})
	return c.Conn.Close()
}
