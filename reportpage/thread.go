package reportpage

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
)

// NodeQueue is one node's queue ids of a thread.
type NodeQueue struct {
	Node string
	Refs []history.QueueRef
}

// ThreadPage is what the thread page shows.
type ThreadPage struct {
	V     admin.StormView
	Nodes []NodeQueue
	Done  string // the action just done (allow, block, reset), to confirm it
}

// perNode groups refs by node, in the order the nodes first appear.
func perNode(refs []history.QueueRef) []NodeQueue {
	var out []NodeQueue
	for _, r := range refs {
		i := slices.IndexFunc(out, func(n NodeQueue) bool { return n.Node == r.Node })
		if i < 0 {
			out = append(out, NodeQueue{Node: r.Node})
			i = len(out) - 1
		}
		out[i].Refs = append(out[i].Refs, r)
	}
	return out
}

func (s *server) thread(w http.ResponseWriter, r *http.Request) {
	t, err := admin.ParseThread(r.PathValue("thread"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, text.Printable(err.Error()))
		return
	}
	v, err := s.cfg.History.Storm(r.Context(), t)
	if err != nil {
		s.fail(w, r, errStatus(err), text.Printable(text.OneLine(err)))
		return
	}
	p := ThreadPage{V: v, Nodes: perNode(v.Queued)}
	switch d := r.URL.Query().Get("done"); d {
	case string(policy.OverrideAllow), string(policy.OverrideBlock), admin.VerbReset:
		p.Done = d
	}
	s.render(w, r, http.StatusOK, "thread.html", "Thread "+string(t), p)
}

func errStatus(err error) int {
	var ae *admin.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return http.StatusInternalServerError
}

// By names who acts from the page in the override events: whoever holds
// the admin token, as the admin API names its callers.
const By = admin.TokenLabel + " (report page)"

// action does allow, block or reset for a logged-in operator whose form
// carries the session's CSRF token; anything else gets 403 and changes
// nothing.
func (s *server) action(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Actions == nil {
		s.fail(w, r, http.StatusForbidden, "the actions are off: the daemon does not serve the admin API (http.admin)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if !s.sess.checkPost(r, s.now()) {
		s.fail(w, r, http.StatusForbidden, "refused: log in with the admin token first, and act from the page's own form (CSRF token missing or wrong)")
		return
	}
	t, err := admin.ParseThread(r.PathValue("thread"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, text.Printable(err.Error()))
		return
	}
	verb := r.PostFormValue("verb")
	switch verb {
	case string(policy.OverrideAllow), string(policy.OverrideBlock), admin.VerbReset:
	default:
		s.fail(w, r, http.StatusBadRequest, "action "+text.Printable(verb)+": want allow, block or reset")
		return
	}
	var dur time.Duration
	if f := r.PostFormValue("for"); f != "" && verb != admin.VerbReset {
		if dur, err = time.ParseDuration(f); err != nil || dur < 0 {
			s.fail(w, r, http.StatusBadRequest, "for "+text.Printable(f)+": want a duration such as 30m or 2h, or nothing for no expiry")
			return
		}
	}
	res, err := s.cfg.Actions.Override(r.Context(), t, verb, dur, By)
	if err != nil {
		s.fail(w, r, errStatus(err), text.Printable(text.OneLine(err)))
		return
	}
	s.log.Info("report page action", "thread", t, "action", verb, "for", dur, "by", By, "warning", res.Warning)
	http.Redirect(w, r, "/thread/"+string(t)+"?done="+url.QueryEscape(verb), http.StatusSeeOther)
}

func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Actions == nil {
		s.fail(w, r, http.StatusNotFound, "nothing to log in for: the actions are off (the daemon does not serve the admin API, http.admin)")
		return
	}
	s.render(w, r, http.StatusOK, "login.html", "Log in", loginData{Next: localPath(r.URL.Query().Get("next"))})
}

type loginData struct {
	Next  string
	Error string
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Actions == nil {
		s.fail(w, r, http.StatusNotFound, "nothing to log in for: the actions are off")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	next := localPath(r.PostFormValue("next"))
	client, now := admin.LoginClient(r.RemoteAddr), s.now()
	if !s.auth.Allow(client, now) {
		s.render(w, r, http.StatusTooManyRequests, "login.html", "Log in", loginData{Next: next,
			Error: fmt.Sprintf("Too many wrong tokens from your address: try again in %s.", admin.Window)})
		return
	}
	if !s.sess.checkToken(r.PostFormValue("token"), s.cfg.Token) {
		s.auth.Fail(client, now) // logged in one summarised line
		s.render(w, r, http.StatusForbidden, "login.html", "Log in", loginData{Next: next,
			Error: "That is not the admin token: paste the contents of http.admin_token_file."})
		return
	}
	s.auth.Succeed(client)
	http.SetCookie(w, sessionCookieFor(r, s.sess.newSession(s.now()), int(sessionTTL.Seconds())))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if !s.sess.checkPost(r, s.now()) {
		s.fail(w, r, http.StatusForbidden, "refused: not logged in, or the CSRF token is missing or wrong")
		return
	}
	if sid, ok := s.sess.valid(r, s.now()); ok {
		s.sess.revoke(sid, s.now())
	}
	http.SetCookie(w, sessionCookieFor(r, "", -1))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
