// Redis over TLS for tests: a redis-server that speaks only TLS and
// requires a client certificate, with certificates from
// testenv.MakeTLSFiles.

package redisenv

import (
	"strconv"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
)

// TLS is a redis-server that accepts only TLS connections with a
// client certificate signed by Files.CAFile.
type TLS struct {
	*Server
	Files testenv.TLSFiles
}

// StartTLS makes certificates with openssl and starts a redis-server
// with no plain port (port 0) and a TLS port on a free loopback port,
// requiring client certificates (tls-auth-clients yes). args are appended.
func StartTLS(t testing.TB, args ...string) *TLS {
	t.Helper()
	bin := testenv.LookPath(t, "redis-server", installHint)
	files := testenv.MakeTLSFiles(t, t.TempDir())
	client := files.ClientConfig(t, true)
	srv := startServer(t, bin, func(port int, dir string) []string {
		return append([]string{
			"--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", dir,
			"--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", files.ServerCertFile, "--tls-key-file", files.ServerKeyFile,
			"--tls-ca-cert-file", files.CAFile, "--tls-auth-clients", "yes",
		}, args...)
	}, func(addr string, pid int) error { return checkPID(addr, pid, client) })
	return &TLS{Server: srv, Files: files}
}

// CLI runs the real redis-cli over TLS with the client certificate.
func (r *TLS) CLI(t testing.TB, args ...string) string {
	t.Helper()
	return CLI(t, r.Addr, append([]string{"--tls", "--cacert", r.Files.CAFile,
		"--cert", r.Files.ClientCertFile, "--key", r.Files.ClientKeyFile}, args...)...)
}
