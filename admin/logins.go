package admin

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Logins limits wrong admin tokens, on the admin API and the report
// page's login alike: a client address that gave MaxFailures wrong ones
// within Window is refused (429) until that window ends, even with the
// right token, and the failures are logged as one summarised line per
// Window, never one line each. It keeps at most maxClients addresses; past
// that, new addresses share one allowance.
type Logins struct {
	log *slog.Logger

	mu      sync.Mutex
	clients map[string]*failures // client address -> its failures in the current window
	lastLog time.Time            // when the last summary was logged
	pending summary              // failures since then
	flush   *time.Timer          // logs pending at the end of the window
}

// Login limits: per client address, MaxFailures wrong tokens per Window.
const (
	MaxFailures = 5
	Window      = time.Minute
	maxClients  = 10000
)

type failures struct {
	since time.Time // the window's start: the first failure
	n     int
}

type summary struct {
	refused, limited int
	clients          map[string]bool
}

// NewLogins is a login limiter logging to log (nil: nowhere).
func NewLogins(log *slog.Logger) *Logins {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logins{log: log, clients: map[string]*failures{}}
}

// LoginClient is the address a request's logins are counted under: the peer's
// IP, without its port.
func LoginClient(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return remoteAddr
}

// Allow reports whether client may try a token at now; a refusal is
// counted in the summary.
func (l *Logins) Allow(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[l.key(client, now)]
	if f == nil || f.n < MaxFailures || now.Sub(f.since) >= Window {
		return true
	}
	l.note(client, now, func(s *summary) { s.limited++ })
	return false
}

// Fail counts a wrong token from client at now.
func (l *Logins) Fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.key(client, now)
	f := l.clients[k]
	if f == nil || now.Sub(f.since) >= Window {
		f = &failures{since: now}
		l.clients[k] = f
	}
	f.n++
	l.note(client, now, func(s *summary) { s.refused++ })
}

// Succeed forgets client's failures.
func (l *Logins) Succeed(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, client)
}

// key is client, or "" (the shared allowance) when the table is full of
// other clients with failures in their window.
func (l *Logins) key(client string, now time.Time) string {
	if _, ok := l.clients[client]; ok || len(l.clients) < maxClients {
		return client
	}
	for c, f := range l.clients {
		if now.Sub(f.since) >= Window {
			delete(l.clients, c)
		}
	}
	if len(l.clients) < maxClients {
		return client
	}
	return ""
}

// note adds to the summary and logs it when a window has passed since the
// last line; otherwise a timer logs it when the window ends.
func (l *Logins) note(client string, now time.Time, add func(*summary)) {
	if l.pending.clients == nil {
		l.pending.clients = map[string]bool{}
	}
	add(&l.pending)
	if len(l.pending.clients) < maxClients {
		l.pending.clients[client] = true
	}
	if l.lastLog.IsZero() || now.Sub(l.lastLog) >= Window {
		if l.flush != nil {
			l.flush.Stop()
			l.flush = nil
		}
		l.logPending(now)
		return
	}
	if l.flush == nil {
		l.flush = time.AfterFunc(Window-now.Sub(l.lastLog), func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.flush = nil
			l.logPending(l.lastLog.Add(Window))
		})
	}
}

// logPending logs the summary, if any, as of now. l.mu is held.
func (l *Logins) logPending(now time.Time) {
	p := l.pending
	if p.refused+p.limited == 0 {
		return
	}
	since := l.lastLog
	if since.IsZero() {
		since = now
	}
	l.log.Warn("admin token refused", "wrong_tokens", p.refused, "rate_limited", p.limited,
		"clients", len(p.clients), "since", since.UTC().Format(time.RFC3339),
		"limit", fmt.Sprintf("%d wrong tokens per client address per %s", MaxFailures, Window))
	l.lastLog, l.pending = now, summary{}
}
