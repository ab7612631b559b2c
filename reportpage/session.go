package reportpage

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Logging in for the actions: the operator pastes the admin token once;
// the page sets a session cookie (HttpOnly, SameSite=Strict, Secure over
// TLS) and derives each form's CSRF token from it. Both are MACs under a
// key derived from the admin token, so the daemon keeps no session table
// (nothing to grow, nothing lost on restart) and a new token ends every
// session.

const (
	sessionCookie = "stormguard_session"
	sessionTTL    = 12 * time.Hour
)

type sessions struct {
	key []byte // HMAC key; nil: nobody can log in
}

func newSessions(token string) sessions {
	if token == "" {
		return sessions{}
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("stormguard report page sessions v1"))
	return sessions{key: m.Sum(nil)}
}

func (s sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a session id valid until now+sessionTTL:
// EXPIRY.NONCE.MAC.
func (s sessions) newSession(now time.Time) string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	body := strconv.FormatInt(now.Add(sessionTTL).Unix(), 10) + "." + hex.EncodeToString(nonce[:])
	return body + "." + s.mac("session", body)
}

// valid returns r's session id if its cookie holds one that is ours and
// unexpired.
func (s sessions) valid(r *http.Request, now time.Time) (string, bool) {
	if s.key == nil {
		return "", false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 {
		return "", false
	}
	body, sum := c.Value[:i], c.Value[i+1:]
	if subtle.ConstantTimeCompare([]byte(sum), []byte(s.mac("session", body))) != 1 {
		return "", false
	}
	exp, _, _ := strings.Cut(body, ".")
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !now.Before(time.Unix(sec, 0)) {
		return "", false
	}
	return c.Value, true
}

// csrf is the CSRF token of the forms in session sid.
func (s sessions) csrf(sid string) string { return s.mac("csrf", sid) }

// checkPost says whether a POST comes from a logged-in operator's own
// form: a valid session and the CSRF token derived from it.
func (s sessions) checkPost(r *http.Request, now time.Time) bool {
	sid, ok := s.valid(r, now)
	if !ok {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf(sid))) == 1
}

func (s sessions) checkToken(got, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

func sessionCookieFor(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// localPath is next if it is a path on this site, else "/".
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, `/\`) || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}
