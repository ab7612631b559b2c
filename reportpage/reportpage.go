// Package reportpage is the report page the daemon serves under / on http.listen:
// an overview of the storms and near misses over a chosen range (charts,
// totals, a table and its CSV), and a page per thread with its senders,
// queue ids and, for an operator logged in with the admin token, the
// allow / block / reset actions.
//
// It must not decide anything or touch a store: it reads the history
// through admin.HistoryAPI and acts through admin's Override, so every
// check and event is admin's. It must not fetch anything from elsewhere:
// its script, styles and the chart library are embedded (static/), and
// its Content-Security-Policy allows only them. Everything a sender wrote
// (subject, addresses) is hostile: it reaches HTML only through
// html/template, with control characters shown as escapes (text.Printable), and
// the CSV only through encoding/csv with formula prefixes defused.
package reportpage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
)

//go:embed static templates
var files embed.FS

// Actor is the one admin operation the page does: allow, block or reset a
// thread (admin.API's Override).
type Actor interface {
	Override(ctx context.Context, t policy.ThreadID, verb string, dur time.Duration, by string) (admin.OverrideResult, error)
}

// Config is what the page needs.
type Config struct {
	// History is where the storms and near misses come from.
	History admin.HistoryAPI
	// Actions, if not nil, does the thread page's allow / block / reset,
	// for an operator logged in with Token. Nil: the page only shows.
	Actions Actor
	// Token is the admin token (http.admin_token_file) an operator logs
	// in with; required with Actions.
	Token string
	// Loopback: the listener is a loopback address, so requests naming a
	// non-loopback Host are refused (DNS rebinding).
	Loopback bool
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log receives the actions done and the errors met; nil: none.
	Log *slog.Logger
	// Logins limits wrong tokens at login, shared with the admin API;
	// nil: one of the page's own, logging to Log.
	Logins *admin.Logins
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.History == nil {
		return errors.New("reportpage: no history to show")
	}
	if c.Actions != nil && len(c.Token) < 32 {
		return errors.New("reportpage: actions need the admin token (http.admin_token_file) to log in with")
	}
	return nil
}

// csp allows the page's own script and styles and nothing else: no inline
// script, no other origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type server struct {
	cfg  Config
	tmpl *template.Template
	sess *sessions
	auth *admin.Logins
	now  func() time.Time
	log  *slog.Logger
}

// New serves the report page over cfg.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("reportpage: templates: %w", err)
	}
	s := &server{cfg: cfg, tmpl: tmpl, sess: newSessions(cfg.Token), auth: cfg.Logins, now: cfg.Now, log: cfg.Log}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.auth == nil {
		s.auth = admin.NewLogins(s.log)
	}
	static, _ := fs.Sub(files, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, http.FileServerFS(static))))
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /report.csv", s.csv)
	mux.HandleFunc("GET /thread/{thread}", s.thread)
	mux.HandleFunc("POST /thread/{thread}/action", s.action)
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no page %s %s", r.Method, text.Printable(r.URL.Path)))
	})

	// A page on another origin must not make the operator's browser act:
	// refuse cross-origin POSTs (beside the CSRF token), and on a loopback
	// listener any Host that is not loopback.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	h := cop.Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Security-Policy", csp)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Referrer-Policy", "no-referrer")
		if cfg.Loopback && !admin.IsLoopback(hostWithPort(r.Host)) {
			s.fail(w, r, http.StatusForbidden, fmt.Sprintf("host %q refused: the report page answers loopback names only", text.Printable(r.Host)))
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// Off answers every request for the page with why it is not served.
func Off(why string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the daemon does not serve the report page: "+why, http.StatusForbidden)
	})
}

func hostWithPort(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "80")
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	v := fmt.Sprintf("public, max-age=%d", int(d.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", v)
		h.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title    string
	LoggedIn bool
	CSRF     string // the session's CSRF token, for the forms
	Actions  bool   // the actions are on (the admin API is)
	Data     any
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := page{Title: title, Actions: s.cfg.Actions != nil, Data: data}
	if sid, ok := s.sess.valid(r, s.now()); ok {
		p.LoggedIn, p.CSRF = true, s.sess.csrf(sid)
	}
	var b strings.Builder
	if err := s.tmpl.ExecuteTemplate(&b, name, p); err != nil {
		s.log.Error("report page", "page", name, "err", err)
		http.Error(w, "report page: cannot render "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page; msg is already safe for one line.
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error.html", http.StatusText(status), msg)
}
