// Certificates for tests: a CA, a server and a client certificate made
// by the real openssl at test time, for servers that speak TLS (Redis,
// slapd) and their clients.

package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const opensslHint = "install openssl (apt-get install openssl)"

// TLSFiles are PEM files in a test's temporary directory.
type TLSFiles struct {
	CAFile         string // the CA that signed both certificates
	ServerCertFile string // CN localhost, SAN DNS:localhost, IP:127.0.0.1
	ServerKeyFile  string
	ClientCertFile string // CN stormguard, extendedKeyUsage clientAuth
	ClientKeyFile  string
}

// MakeTLSFiles makes a fresh CA and a server and a client certificate it
// signed (P-256 keys, valid one day) with openssl, in dir.
func MakeTLSFiles(t testing.TB, dir string) TLSFiles {
	t.Helper()
	openssl := LookPath(t, "openssl", opensslHint)
	f := TLSFiles{
		CAFile:         filepath.Join(dir, "ca.crt"),
		ServerCertFile: filepath.Join(dir, "server.crt"),
		ServerKeyFile:  filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.crt"),
		ClientKeyFile:  filepath.Join(dir, "client.key"),
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("testenv: openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	key := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	caKey := filepath.Join(dir, "ca.key")
	run(append(append([]string{"req", "-x509", "-new"}, key...),
		"-keyout", caKey, "-out", f.CAFile, "-days", "1", "-subj", "/CN=stormguard test CA")...)
	sign := func(name, subj, ext, certFile, keyFile string) {
		csr := filepath.Join(dir, name+".csr")
		extFile := filepath.Join(dir, name+".ext")
		if err := os.WriteFile(extFile, []byte(ext), 0o600); err != nil {
			t.Fatal(err)
		}
		run(append(append([]string{"req", "-new"}, key...), "-keyout", keyFile, "-out", csr, "-subj", subj)...)
		run("x509", "-req", "-in", csr, "-CA", f.CAFile, "-CAkey", caKey, "-CAcreateserial",
			"-out", certFile, "-days", "1", "-extfile", extFile)
	}
	sign("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
		f.ServerCertFile, f.ServerKeyFile)
	sign("client", "/CN=stormguard", "extendedKeyUsage=clientAuth\n", f.ClientCertFile, f.ClientKeyFile)
	return f
}

// ClientConfig is the TLS config a client of a server with f's server
// certificate needs: the CA, and the client certificate when withCert.
func (f TLSFiles) ClientConfig(t testing.TB, withCert bool) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("testenv: %s holds no certificate", f.CAFile)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(f.ClientCertFile, f.ClientKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}
