package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// The admin API, /admin/ on the daemon's http.listen: the operator's
// subcommands as JSON over HTTP, run by an API (Direct on the daemon's own
// store). The subcommands use it with the memory store (Client); it works
// with Redis too. It changes policy, so every request must bear the admin
// token (auth.go), and the daemon serves it only where the operator said.

// IsLoopback reports whether a HOST:PORT only accepts connections from
// this host.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Request bodies.
type overrideRequest struct {
	Override string `json:"override"`
	For      string `json:"for,omitempty"` // a Go duration: 30m, 2h
}

type listRequest struct {
	Members int `json:"members"`
}

type listPolicyRequest struct {
	Policy string `json:"policy"` // a form policy.ParseListPolicy reads; "": none
}

type modeRequest struct {
	Mode string `json:"mode"`
}

// There is no "by" in any request: the events name the authenticated
// caller (requester), never what the request says about itself.

// errorBody is every admin API error: one line, as the subcommand prints it.
type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var ae *Error
	if errors.As(err, &ae) {
		status = ae.Status
	}
	writeJSON(w, status, errorBody{Error: text.OneLine(err)})
}

// readBody decodes an optional JSON body into v.
func readBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return badRequest("request body: %s", text.OneLine(err))
	}
	return nil
}

// requester names who made a change, for its event: the authenticated
// caller (TokenLabel, and the local user when it can be found).
func requester(r *http.Request) string { return identity(r.Context()) }

// NewHandler serves api under /admin/ to requests bearing token
// ("Authorization: Bearer TOKEN"; any other gets 401). With loopback (the
// listener is a loopback address), requests naming a non-loopback Host
// are refused. logins limits wrong tokens per client address (shared with
// the report page's login; nil: one of its own, logging nowhere).
func NewHandler(api API, loopback bool, token string, logins *Logins) http.Handler {
	if logins == nil {
		logins = NewLogins(nil)
	}
	mux := http.NewServeMux()
	thread := func(w http.ResponseWriter, r *http.Request) (policy.ThreadID, bool) {
		t, err := ParseThread(r.PathValue("thread"))
		if err != nil {
			writeError(w, badRequest("%s", err))
			return "", false
		}
		return t, true
	}
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
	mux.HandleFunc("GET /admin/threads", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := 200
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				writeError(w, badRequest("limit %q: want a whole number from 1 to %d", s, store.MaxListLimit))
				return
			}
			if err := CheckLimit(n); err != nil {
				writeError(w, err)
				return
			}
			limit = n
		}
		all, _ := strconv.ParseBool(q.Get("all"))
		views, err := api.Threads(r.Context(), limit, all)
		reply(w, views, err)
	})
	mux.HandleFunc("GET /admin/threads/{thread}", func(w http.ResponseWriter, r *http.Request) {
		if t, ok := thread(w, r); ok {
			v, err := api.Thread(r.Context(), t)
			reply(w, v, err)
		}
	})
	mux.HandleFunc("PUT /admin/threads/{thread}/override", func(w http.ResponseWriter, r *http.Request) {
		t, ok := thread(w, r)
		if !ok {
			return
		}
		var req overrideRequest
		if err := readBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		if req.Override != string(policy.OverrideAllow) && req.Override != string(policy.OverrideBlock) {
			writeError(w, badRequest(`override %q: want "allow" or "block" (DELETE removes it, POST .../reset resets the thread)`, req.Override))
			return
		}
		var dur time.Duration
		if req.For != "" {
			d, err := time.ParseDuration(req.For)
			if err != nil {
				writeError(w, badRequest("for %q: want a duration such as 30m or 2h", req.For))
				return
			}
			dur = d
		}
		res, err := api.Override(r.Context(), t, req.Override, dur, requester(r))
		reply(w, res, err)
	})
	// Removing an override and resetting a thread take no arguments.
	verb := func(v string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			t, ok := thread(w, r)
			if !ok {
				return
			}
			if err := readBody(r, &struct{}{}); err != nil {
				writeError(w, err)
				return
			}
			res, err := api.Override(r.Context(), t, v, 0, requester(r))
			reply(w, res, err)
		}
	}
	mux.HandleFunc("DELETE /admin/threads/{thread}/override", verb(VerbNone))
	mux.HandleFunc("POST /admin/threads/{thread}/reset", verb(VerbReset))
	mux.HandleFunc("GET /admin/lists", func(w http.ResponseWriter, r *http.Request) {
		lists, err := api.Lists(r.Context())
		reply(w, lists, err)
	})
	mux.HandleFunc("PUT /admin/lists/{addr}", func(w http.ResponseWriter, r *http.Request) {
		var req listRequest
		if err := readBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		v, err := api.SetList(r.Context(), r.PathValue("addr"), req.Members)
		reply(w, v, err)
	})
	mux.HandleFunc("DELETE /admin/lists/{addr}", func(w http.ResponseWriter, r *http.Request) {
		v, err := api.DeleteList(r.Context(), r.PathValue("addr"))
		reply(w, v, err)
	})
	mux.HandleFunc("PUT /admin/lists/{addr}/policy", func(w http.ResponseWriter, r *http.Request) {
		var req listPolicyRequest
		if err := readBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		v, err := api.SetListPolicy(r.Context(), r.PathValue("addr"), req.Policy)
		reply(w, v, err)
	})
	mux.HandleFunc("GET /admin/mode", func(w http.ResponseWriter, r *http.Request) {
		v, err := api.Mode(r.Context())
		reply(w, v, err)
	})
	mux.HandleFunc("PUT /admin/mode", func(w http.ResponseWriter, r *http.Request) {
		var req modeRequest
		if err := readBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		v, err := api.SetMode(r.Context(), req.Mode, requester(r))
		reply(w, v, err)
	})
	mux.HandleFunc("GET /admin/storms", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since, err := time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			writeError(w, badRequest("since %q: want an RFC 3339 time such as 2026-12-01T08:00:00Z", q.Get("since")))
			return
		}
		limit := 0
		if s := q.Get("limit"); s != "" {
			if limit, err = strconv.Atoi(s); err != nil {
				writeError(w, badRequest("limit %q: want a whole number from 1 to %d", s, history.MaxLimit))
				return
			}
		}
		near, _ := strconv.ParseBool(q.Get("near_misses"))
		views, err := api.Storms(r.Context(), since, near, limit)
		reply(w, views, err)
	})
	mux.HandleFunc("GET /admin/storms/{thread}", func(w http.ResponseWriter, r *http.Request) {
		if t, ok := thread(w, r); ok {
			v, err := api.Storm(r.Context(), t)
			reply(w, v, err)
		}
	})
	mux.HandleFunc("GET /admin/threads/{thread}/queued", func(w http.ResponseWriter, r *http.Request) {
		if t, ok := thread(w, r); ok {
			v, err := api.Queued(r.Context(), t)
			reply(w, v, err)
		}
	})
	handlePosters(mux, api, reply)
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("no admin API endpoint %s %s", r.Method, r.URL.Path))
	})

	// A web page the operator has open must not drive the API: refuse
	// cross-origin browser requests, and on a loopback listener any Host
	// that is not loopback (DNS rebinding).
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, &Error{http.StatusForbidden, "cross-origin request refused"})
	}))
	h := authenticate(token, logins, cop.Handler(mux))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loopback && !IsLoopback(hostWithPort(r.Host)) {
			writeError(w, &Error{http.StatusForbidden, fmt.Sprintf("host %q refused: the admin API answers loopback names only", r.Host)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func hostWithPort(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "80")
}

// Off answers every /admin/ request with why it is not served.
func Off(why string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, &Error{http.StatusForbidden, "the daemon does not serve the admin API: " + why})
	})
}
