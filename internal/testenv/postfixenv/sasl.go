package postfixenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

// saslHint says how to get Cyrus SASL's sasldb tools.
const saslHint = "install the Debian packages sasl2-bin and libsasl2-modules (saslpasswd2, the PLAIN and sasldb plugins); ./scripts/test.sh does"

// saslSetup gives a Postfix instance SMTP AUTH with Cyrus SASL: a private
// sasldb (written with saslpasswd2) holding the given logins and
// passwords, a private smtpd.conf naming it (cyrus_sasl_config_path), and
// the main.cf settings for AUTH PLAIN/LOGIN without TLS, which the
// submission service (submissionCF) turns on. Cyrus needs no daemon of its own, unlike Dovecot SASL: the
// smtpd process reads the sasldb itself.
//
// Postfix asks Cyrus with the realm unset (smtpd_sasl_local_domain empty),
// so Cyrus looks the login up in the realm of the server's name
// (myhostname) and reports it as typed: {auth_authen} is "jdoe", not
// "jdoe@realm".
func (p *Server) saslSetup(users map[string]string) [][2]string {
	p.t.Helper()
	saslpasswd := testenv.LookPath(p.t, "saslpasswd2", saslHint)
	for _, plugin := range []string{"libsasldb", "libplain"} {
		if m, _ := filepath.Glob("/usr/lib/*/sasl2/" + plugin + ".so*"); len(m) == 0 {
			testenv.Require(p.t, "Cyrus SASL's "+plugin+" plugin", saslHint)
		}
	}
	// Debian's Postfix reads smtpd.conf from $config_directory/sasl
	// whatever cyrus_sasl_config_path says [seen with strace]; set both.
	dir := filepath.Join(p.ConfigDir, "sasl")
	if err := os.Mkdir(dir, 0o755); err != nil {
		p.t.Fatalf("postfixenv: postfix sasl: %v", err)
	}
	db := filepath.Join(dir, "sasldb2")
	logins := make([]string, 0, len(users))
	for u := range users {
		logins = append(logins, u)
	}
	sort.Strings(logins)
	for _, u := range logins {
		if u == "" || strings.ContainsAny(u, "\r\n \t@") || strings.ContainsAny(users[u], "\r\n") {
			p.t.Fatalf("postfixenv: postfix sasl: login %q: want a plain login without spaces or @, and a one-line password", u)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, saslpasswd, "-f", db, "-c", "-p", "-u", Hostname, u)
		cmd.Stdin = strings.NewReader(users[u])
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			p.t.Fatalf("postfixenv: saslpasswd2 %s: %v\n%s", u, err, out)
		}
	}
	// smtpd runs as mail_owner (postfix) and reads the database itself; a
	// test's throwaway passwords may be world-readable.
	if err := os.Chmod(db, 0o644); err != nil {
		p.t.Fatalf("postfixenv: postfix sasl: %v", err)
	}
	conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: %s\nmech_list: PLAIN LOGIN\n", db)
	if err := os.WriteFile(filepath.Join(dir, "smtpd.conf"), []byte(conf), 0o644); err != nil {
		p.t.Fatalf("postfixenv: postfix sasl: %v", err)
	}
	// Cyrus's settings are global; AUTH itself is on only on the
	// submission service (submissionCF).
	return [][2]string{
		{"smtpd_sasl_auth_enable", "no"},
		{"smtpd_sasl_type", "cyrus"},
		{"smtpd_sasl_path", "smtpd"}, // Cyrus's application name: smtpd.conf
		{"cyrus_sasl_config_path", dir},
		{"smtpd_sasl_local_domain", ""},
		// Plain text over loopback: a test has no TLS, and anonymous
		// logins stay off.
		{"smtpd_sasl_security_options", "noanonymous"},
		{"smtpd_tls_auth_only", "no"},
	}
}

// submissionCF is the master.cf entry of the submission service: smtpd on
// SubmissionAddr with AUTH on and required before anything is accepted
// (from 127.0.0.1 too: mynetworks does not let a client past it), as
// Debian's master.cf submission example has it. The milters are main.cf's,
// as on the main port.
func (p *Server) submissionCF() string {
	if p.SubmissionAddr == "" {
		return ""
	}
	return p.SubmissionAddr + ` inet n       -       n       -       -       smtpd
  -o syslog_name=postfix-sg` + strconv.Itoa(p.Port) + `/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
`
}
