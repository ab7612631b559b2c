package admin

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The admin API's authentication: one token, in a file only the daemon's
// user (and root) can read. The daemon creates it at its first start;
// the subcommands read it and send it as "Authorization: Bearer TOKEN".
// Whoever can read the file is an operator; the events name the caller as
// TokenLabel plus, on a loopback connection, the caller's local user, never
// anything the request says about itself.

// TokenLabel names a caller holding the admin token, in events.
const TokenLabel = "admin-token"

// EnsureToken returns the token in path, first creating the file (32
// random bytes in hex, mode 0600, and its directory, mode 0700, if
// missing) when it does not exist. It refuses a token file that others
// than its owner may read or write.
func EnsureToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("no token file configured")
	}
	if tok, err := readTokenFile(path); !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("cannot create the admin token %s: %w (make its directory writable by the daemon's user, e.g. systemd StateDirectory=stormguard, or set http.admin_token_file)", path, unwrapPath(err))
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process made it first
		return readTokenFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("cannot create the admin token %s: %w (make its directory writable by the daemon's user, e.g. systemd StateDirectory=stormguard, or set http.admin_token_file)", path, unwrapPath(err))
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("cannot write the admin token %s: %w", path, unwrapPath(err))
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("cannot write the admin token %s: %w", path, unwrapPath(err))
	}
	return tok, nil
}

// ReadToken reads the token a subcommand sends, with an error an operator
// can act on.
func ReadToken(path string) (string, error) {
	tok, err := readTokenFile(path)
	if err != nil {
		return "", readTokenError(path, err)
	}
	return tok, nil
}

func readTokenError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot read the admin token %s: permission denied — run as root or the stormguard user", path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cannot read the admin token %s: it does not exist — the daemon creates it when it starts with the admin API on; is http.admin_token_file the same in the daemon's config?", path)
	}
	return fmt.Errorf("cannot read the admin token %s: %w", path, err)
}

func readTokenFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token %s: mode %04o lets others read or write it; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token %s: want one line of at least 32 characters (delete the file and restart the daemon to make a new one)", path)
	}
	return tok, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

type identityKey struct{}

// identity is who made the request, once authenticated: TokenLabel and,
// when it can be found, the local user at the other end.
func identity(ctx context.Context) string {
	if s, ok := ctx.Value(identityKey{}).(string); ok {
		return s
	}
	return TokenLabel
}

// authenticate passes requests bearing token to h, the caller's identity
// in their context, and answers any other with 401; a client address past
// logins' limit of wrong tokens gets 429 whatever it sends.
func authenticate(token string, logins *Logins, h http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, now := LoginClient(r.RemoteAddr), time.Now()
		if !logins.Allow(client, now) {
			w.Header().Set("Retry-After", strconv.Itoa(int(Window.Seconds())))
			writeError(w, &Error{http.StatusTooManyRequests, fmt.Sprintf("too many wrong admin tokens from this address: try again in %s", Window)})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 || token == "" {
			if ok {
				logins.Fail(client, now) // logged in one summarised line
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="stormguard admin API"`)
			msg := "the admin API needs the admin token: send Authorization: Bearer followed by the contents of http.admin_token_file (the stormguard subcommands do)"
			if ok {
				msg = "admin token refused: it is not the one in the daemon's http.admin_token_file"
			}
			writeError(w, &Error{http.StatusUnauthorized, msg})
			return
		}
		id := TokenLabel
		if u := peerUser(r); u != "" {
			id += " (local user " + u + ")"
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// peerUser names the local user at the other end of r's connection when
// it is a loopback TCP connection (Linux: /proc/net/tcp*), else "".
func peerUser(r *http.Request) string {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	remote, err := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	if local == nil || err != nil || !remote.IP.IsLoopback() {
		return ""
	}
	server, err := net.ResolveTCPAddr("tcp", local.String())
	if err != nil {
		return ""
	}
	// The caller's socket: its local address is our remote one.
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		v6 := strings.HasSuffix(file, "6")
		uid, ok := socketUID(file, procAddr(remote, v6), procAddr(server, v6))
		if !ok {
			continue
		}
		if u, err := user.LookupId(uid); err == nil {
			return u.Username
		}
		return "uid " + uid
	}
	return ""
}

// procAddr writes a as /proc/net/tcp* does: each 32-bit word of the
// address in host order, in hex, then the port.
func procAddr(a *net.TCPAddr, v6 bool) string {
	ip := a.IP.To4()
	if v6 {
		ip = a.IP.To16()
	}
	if ip == nil {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(ip); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
	}
	fmt.Fprintf(&b, ":%04X", a.Port)
	return b.String()
}

// socketUID finds the socket from local to remote in file and returns its
// owner's uid.
func socketUID(file, local, remote string) (string, bool) {
	if local == "" || remote == "" {
		return "", false
	}
	f, err := os.Open(file)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
		fields := strings.Fields(sc.Text())
		if len(fields) > 7 && fields[1] == local && fields[2] == remote {
			if _, err := strconv.Atoi(fields[7]); err == nil {
				return fields[7], true
			}
		}
	}
	return "", false
}
