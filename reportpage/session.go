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
	"sync"
	"time"
)

// Logging in for the actions: the operator pastes the admin token once;
// the page sets a session cookie (HttpOnly, SameSite=Strict, Secure over
// TLS) and derives each form's CSRF token from it. Both are MACs under a
// key derived from the admin token and a random value drawn at start, so
// the daemon keeps no table of live sessions, and a new token or a
// restart ends every session. Logging out revokes the session: its id is
// kept, until it would have expired, in a table of revoked ones (at most
// maxRevoked; when that is full the key is drawn again, which ends every
// session).

const (
	sessionCookie = "stormguard_session"
	sessionTTL    = 12 * time.Hour
	maxRevoked    = 10000
)

type sessions struct {
	token string // the admin token; "": nobody can log in

	mu      sync.Mutex
	key     []byte               // HMAC key; nil: nobody can log in
	revoked map[string]time.Time // session id -> when it expires anyway
}

func newSessions(token string) *sessions {
	s := &sessions{token: token, revoked: map[string]time.Time{}}
	if token != "" {
		s.key = sessionKey(token)
	}
	return s
}

// sessionKey is a new HMAC key: the admin token's, with a random value.
func sessionKey(token string) []byte {
	var salt [16]byte
	_, _ = rand.Read(salt[:])
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("stormguard report page sessions v2"))
	m.Write(salt[:])
	return m.Sum(nil)
}

func (s *sessions) mac(parts ...string) string {
	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a session id valid until now+sessionTTL:
// EXPIRY.NONCE.MAC.
func (s *sessions) newSession(now time.Time) string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	body := strconv.FormatInt(now.Add(sessionTTL).Unix(), 10) + "." + hex.EncodeToString(nonce[:])
	return body + "." + s.mac("session", body)
}

// valid returns r's session id if its cookie holds one that is ours,
// unexpired and not revoked.
func (s *sessions) valid(r *http.Request, now time.Time) (string, bool) {
	if s.token == "" {
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
	s.mu.Lock()
	_, gone := s.revoked[c.Value]
	s.mu.Unlock()
	if gone {
		return "", false
	}
	return c.Value, true
}

// revoke ends session sid (valid at now) before its expiry.
func (s *sessions) revoke(sid string, now time.Time) {
	exp, _, _ := strings.Cut(sid, ".")
	sec, _ := strconv.ParseInt(exp, 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, until := range s.revoked {
		if !now.Before(until) {
			delete(s.revoked, id)
		}
	}
	if len(s.revoked) >= maxRevoked { // every session ends: none to keep
		s.key, s.revoked = sessionKey(s.token), map[string]time.Time{}
		return
	}
	s.revoked[sid] = time.Unix(sec, 0)
}

// csrf is the CSRF token of the forms in session sid.
func (s *sessions) csrf(sid string) string { return s.mac("csrf", sid) }

// checkPost says whether a POST comes from a logged-in operator's own
// form: a valid session and the CSRF token derived from it.
func (s *sessions) checkPost(r *http.Request, now time.Time) bool {
	sid, ok := s.valid(r, now)
	if !ok {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf(sid))) == 1
}

func (s *sessions) checkToken(got, token string) bool {
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
