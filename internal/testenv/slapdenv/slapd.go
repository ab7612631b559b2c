// Package slapdenv starts a private OpenLDAP server for tests (Start):
// Debian's slapd, run from a slapd.conf written here into a temporary
// directory, on a free 127.0.0.1 port (and an ldaps:// one with a test
// CA's certificate if asked), with an mdb database loaded by slapadd
// before the server starts (20,000 entries load in a second that way,
// against a minute through ldapadd). It never uses the system's slapd
// configuration or database.
//
// It needs slapd installed (with no configuration, so no system directory
// is set up or started), and openssl for TLS; without them the test is
// skipped or fails as testenv says. Its own test also needs ldap-utils.
package slapdenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

const installHint = `install slapd and ldap-utils (echo "slapd slapd/no_configuration boolean true" | debconf-set-selections; apt-get install slapd ldap-utils)`

// Server is a running private OpenLDAP server.
type Server struct {
	URL      string // ldap://127.0.0.1:PORT
	LDAPSURL string // ldaps://127.0.0.1:PORT, when started with TLS
	BaseDN   string // dc=example,dc=org
	RootDN   string // cn=admin,dc=example,dc=org, bypasses every limit
	RootPW   string
	// ReaderDN may read everything but is held to the size limit of 500
	// entries per search (paged searches are not), as a directory's
	// service accounts usually are.
	ReaderDN, ReaderPW string
	TLS                testenv.TLSFiles // when started with TLS
}

// Options say how to start slapd.
type Options struct {
	LDIF string // entries under BaseDN (the base entry and the reader are added here)
	TLS  bool   // also serve ldaps:// and StartTLS with a test CA's certificate
}

// Start loads opts.LDIF into a fresh mdb database, starts slapd on a
// free loopback port and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	slapd := testenv.LookPath(t, "slapd", installHint)
	slapadd := testenv.LookPath(t, "slapadd", installHint)
	dir := t.TempDir()
	s := &Server{
		BaseDN: "dc=example,dc=org", RootDN: "cn=admin,dc=example,dc=org", RootPW: "rootsecret",
		ReaderDN: "cn=reader,dc=example,dc=org", ReaderPW: "readersecret",
	}
	dbDir := filepath.Join(dir, "db")
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var tlsConf string
	if opts.TLS {
		s.TLS = testenv.MakeTLSFiles(t, dir)
		tlsConf = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
			s.TLS.CAFile, s.TLS.ServerCertFile, s.TLS.ServerKeyFile)
	}
	conf := filepath.Join(dir, "slapd.conf")
	// The AD-style group: an objectClass named group with member and
	// mail, as Active Directory's has, for the filter and attributes to
	// be tried on.
	body := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'group' SUP top STRUCTURAL MUST cn MAY ( member $ mail $ description ) )
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
%[2]s
database mdb
maxsize 1073741824
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[6]s
limits dn.exact="%[7]s" size.soft=500 size.hard=500 size.pr=500 size.prtotal=unlimited
access to * by * read
`, dir, tlsConf, s.BaseDN, s.RootDN, s.RootPW, dbDir, s.ReaderDN)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ldif := fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"+
		"dn: %s\nobjectClass: person\ncn: reader\nsn: reader\nuserPassword: %s\n\n%s",
		s.BaseDN, s.ReaderDN, s.ReaderPW, opts.LDIF)
	ldifPath := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldifPath, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapadd, "-q", "-f", conf, "-l", ldifPath).CombinedOutput(); err != nil {
		t.Fatalf("slapdenv: slapadd: %v\n%s", err, tail(out, 2000))
	}

	var errs []error
	for range testenv.StartAttempts {
		err := s.start(t, slapd, conf, dir, opts.TLS)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatalf("slapdenv: slapd did not start: %v", errors.Join(errs...))
	return nil
}

// start runs slapd in the foreground (-d 0) on free ports and waits until
// it accepts connections.
func (s *Server) start(t testing.TB, bin, conf, dir string, withTLS bool) error {
	port := testenv.FreePort(t)
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(port)
	urls := s.URL + "/"
	var tlsPort int
	if withTLS {
		tlsPort = testenv.FreePort(t)
		s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(tlsPort)
		urls += " ldaps://127.0.0.1:" + strconv.Itoa(tlsPort) + "/"
	}
	logPath := filepath.Join(dir, "slapd-"+strconv.Itoa(port)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-d", "0", "-h", urls, "-f", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	logTail := func() string { b, _ := os.ReadFile(logPath); return tail(b, 2000) }
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(testenv.ReadyTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("slapd exited on port %d: %s", port, logTail())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			t.Cleanup(stop)
			return nil
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("slapd not listening on port %d after %s: %s", port, testenv.ReadyTimeout, logTail())
		}
		time.Sleep(20 * time.Millisecond) // polling for the port to open, with a deadline
	}
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
