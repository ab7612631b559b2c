// Package postfixenv starts a private Postfix for tests (Start): its own
// main.cf and master.cf, queue and log in a directory under /tmp, its
// smtpd on a free 127.0.0.1 port, relaying to a sink or discarding, with a
// milter if the test names one, and a submission port with SMTP AUTH
// through Cyrus SASL (sasl.go) if it asks. Tests read and change its
// queue as an operator would (queue.go: postqueue, postsuper).
//
// It needs the Debian package postfix (installed with "No configuration",
// so no system mail server is set up or started) and root, which Postfix
// starts as; sasl2-bin and libsasl2-modules for SMTP AUTH. Without them
// the test is skipped or fails as testenv says. It reads nothing from
// /etc/postfix and leaves nothing running when the test ends.
package postfixenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/mtaenv"
)

// Hostname is the myhostname of every test Postfix.
const Hostname = "mx.stormguard.test"

// Options configures Start.
type Options struct {
	// RelayTo is the host:port every accepted message is relayed to
	// (relayhost = [host]:port), typically a Sink's Addr. Empty: accepted
	// mail is discarded (default_transport = discard).
	RelayTo string
	// Milter is the smtpd_milters value, e.g. "inet:127.0.0.1:7357" or
	// "unix:/path/sock", or a per-milter form such as
	// "{ inet:127.0.0.1:7357, default_action=accept }". Empty: no milter.
	Milter string
	// DefaultAction is milter_default_action: what Postfix does when the
	// milter is unreachable or fails. Empty means "tempfail".
	DefaultAction string
	// SASL, when not empty, adds a submission service on its own port
	// (SubmissionAddr) that requires SMTP AUTH (PLAIN, LOGIN; no TLS
	// needed) with these logins and passwords, through Cyrus SASL and a
	// private sasldb (sasl.go); Postfix passes the login to milters in
	// {auth_authen}. The main port (Addr) offers no AUTH, as an MX.
	SASL map[string]string
	// Extra main.cf settings, applied after (and so overriding) the
	// defaults Start writes.
	Extra map[string]string
}

// Server is a private Postfix instance: its own config, queue and data
// directories under the MTA's directory, its smtpd on the MTA's port, its
// log in LogFile. It is stopped, every process of it killed, and its
// directory removed when the test ends.
type Server struct {
	*mtaenv.Instance
	ConfigDir string // config_directory: main.cf, master.cf
	QueueDir  string // queue_directory
	DataDir   string // data_directory
	// SubmissionAddr is the submission service's host:port (127.0.0.1),
	// with Options.SASL; "" without.
	SubmissionAddr string

	t        testing.TB
	postfix  string // path of the postfix command
	postconf string
}

// Start starts a private Postfix and waits until its smtpd answers
// with a 220 banner. It needs the postfix package and root (Postfix starts
// as root and drops to mail_owner); without them it calls Require.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	hint := "install the Debian package postfix (preseed postfix/main_mailer_type 'No configuration'); ./scripts/test.sh does"
	postfixCmd := testenv.LookPath(t, "postfix", hint)
	postconfCmd := testenv.LookPath(t, "postconf", hint)
	if os.Geteuid() != 0 {
		testenv.Require(t, "root", "a private Postfix must be started as root; run the tests as root")
	}
	m := mtaenv.New(t, "postfix", "sgpf-", "maillog")
	p := &Server{
		Instance:  m,
		t:         t,
		ConfigDir: filepath.Join(m.Dir, "etc"),
		QueueDir:  filepath.Join(m.Dir, "spool"),
		DataDir:   filepath.Join(m.Dir, "data"),
		postfix:   postfixCmd,
		postconf:  postconfCmd,
	}
	// Postfix's unprivileged processes must traverse the directory. The
	// queue directory must exist before "postfix start" (its script cds
	// there first); its subdirectories and the data directory are
	// created with the right owners by post-install create-missing.
	if err := os.Chmod(m.Dir, 0o755); err != nil {
		t.Fatalf("postfixenv: postfix: %v", err)
	}
	for _, dir := range []string{p.ConfigDir, p.QueueDir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("postfixenv: postfix: %v", err)
		}
	}
	var sasl [][2]string
	if len(opts.SASL) > 0 {
		sasl = p.saslSetup(opts.SASL)
	}
	// "postfix start" creates what is missing, checks the rest and waits
	// (master -w) until the master has opened its listeners.
	p.Start(func() (int, error) {
		if sasl != nil {
			// A port taken by the time master binds it shows in the log
			// as for the main port, and start tries again.
			p.SubmissionAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
		}
		if err := os.WriteFile(filepath.Join(p.ConfigDir, "main.cf"), []byte(p.mainCF(opts, sasl)), 0o644); err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(p.ConfigDir, "master.cf"), []byte(p.masterCF()), 0o644); err != nil {
			return 0, err
		}
		if out, err := p.run(time.Minute, p.postfix, "-c", p.ConfigDir, "start"); err != nil {
			return 0, fmt.Errorf("postfix start: %v\n%s", err, out)
		}
		pid, err := p.masterPID()
		if err != nil {
			out, _ := p.run(30*time.Second, p.postfix, "-c", p.ConfigDir, "stop")
			return 0, fmt.Errorf("postfix started, but: %v; postfix stop: %s", err, out)
		}
		return pid, nil
	})
	return p
}

// mainCF renders main.cf: everything a test instance needs, nothing taken
// from /etc/postfix.
func (p *Server) mainCF(opts Options, sasl [][2]string) string {
	action := opts.DefaultAction
	if action == "" {
		action = "tempfail"
	}
	settings := [][2]string{
		{"compatibility_level", "3.6"},
		{"queue_directory", p.QueueDir},
		{"data_directory", p.DataDir},
		{"mail_owner", "postfix"},
		{"setgid_group", "postdrop"},
		// A name of its own in every log line, so nothing is mistaken for
		// (or collides with) another instance's.
		{"syslog_name", "postfix-sg" + strconv.Itoa(p.Port)},
		{"maillog_file", p.LogFile},
		// postfix refuses a maillog_file outside these prefixes (default
		// "/var, /dev/stdout"), fatally and silently when stderr is not a
		// terminal.
		{"maillog_file_prefixes", p.Dir},
		{"myhostname", Hostname},
		{"mydomain", "stormguard.test"},
		{"myorigin", "$myhostname"},
		{"smtpd_banner", "$myhostname ESMTP stormguard test instance " + p.Tag},
		{"inet_interfaces", "127.0.0.1"},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"mydestination", ""},
		{"local_recipient_maps", ""},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"relay_domains", ""},
		// Any domain is accepted from 127.0.0.1 and relayed; nothing else
		// may connect anyway.
		{"smtpd_relay_restrictions", "permit_mynetworks, reject"},
		{"smtpd_recipient_restrictions", ""},
		{"smtpd_peername_lookup", "no"},
		{"smtp_dns_support_level", "disabled"},
		{"smtputf8_enable", "no"},
		{"biff", "no"},
		{"append_dot_mydomain", "no"},
		{"readme_directory", "no"},
		{"html_directory", "no"},
		{"smtpd_tls_security_level", "none"},
		{"smtp_tls_security_level", "none"},
		// Fast queue: retries within a second or two, no warnings.
		{"queue_run_delay", "1s"},
		{"minimal_backoff_time", "1s"},
		{"maximal_backoff_time", "2s"},
		{"delay_warning_time", "0h"},
		{"in_flow_delay", "0s"},
		{"smtpd_error_sleep_time", "0s"},
		{"smtpd_milters", opts.Milter},
		{"non_smtpd_milters", ""},
		{"milter_protocol", "6"},
		{"milter_default_action", action},
	}
	if opts.RelayTo != "" {
		host, port, err := net.SplitHostPort(opts.RelayTo)
		if err != nil {
			p.t.Fatalf("postfixenv: postfix: RelayTo %q: %v", opts.RelayTo, err)
		}
		settings = append(settings,
			[2]string{"relayhost", "[" + host + "]:" + port},
			[2]string{"default_transport", "smtp"},
			[2]string{"relay_transport", "smtp"})
	} else {
		settings = append(settings,
			[2]string{"relayhost", ""},
			[2]string{"default_transport", "discard:stormguard test instance"},
			[2]string{"relay_transport", "discard:stormguard test instance"})
	}
	settings = append(settings, sasl...)
	keys := make([]string, 0, len(opts.Extra))
	for k := range opts.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		settings = append(settings, [2]string{k, opts.Extra[k]})
	}

	// A later setting replaces an earlier one in place (Postfix would
	// take the last but warn in every process's log).
	at := map[string]int{}
	var lines [][2]string
	for _, kv := range settings {
		if i, ok := at[kv[0]]; ok {
			lines[i] = kv
			continue
		}
		at[kv[0]] = len(lines)
		lines = append(lines, kv)
	}
	var b strings.Builder
	b.WriteString("# Private Postfix for a stormguard test; written by internal/testenv/postfixenv.\n")
	for _, kv := range lines {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	return b.String()
}

// masterCF renders master.cf: the standard services, none chrooted, smtpd
// on the instance's own loopback port, and postlogd for maillog_file.
func (p *Server) masterCF() string {
	return `# Private Postfix for a stormguard test; written by internal/testenv/postfixenv.
# service type  private unpriv  chroot  wakeup  maxproc command + args
` + p.Addr + ` inet n       -       n       -       -       smtpd
` + p.submissionCF() + `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
}

// run runs a command with a deadline and returns its combined output.
func (p *Server) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// SetMain sets one main.cf parameter (postconf -e). Running processes see
// it only after Reload.
func (p *Server) SetMain(key, value string) {
	p.t.Helper()
	if strings.ContainsAny(key+value, "\n\r") || strings.ContainsAny(key, " =") {
		p.t.Fatalf("postfixenv: postfix: SetMain(%q, %q): bad key or value", key, value)
	}
	if out, err := p.run(30*time.Second, p.postconf, "-c", p.ConfigDir, "-e", key+" = "+value); err != nil {
		p.t.Fatalf("postfixenv: postconf -e %s: %v\n%s", key, err, out)
	}
}

// Main returns the value of a main.cf parameter (postconf -h), with
// $names expanded.
func (p *Server) Main(key string) string {
	p.t.Helper()
	out, err := p.run(30*time.Second, p.postconf, "-c", p.ConfigDir, "-x", "-h", key)
	if err != nil {
		p.t.Fatalf("postfixenv: postconf -h %s: %v\n%s", key, err, out)
	}
	return strings.TrimRight(out, "\n")
}

// Reload makes Postfix re-read its configuration (postfix reload) and
// waits until every process that ran before it has exited, so the next
// connection is served with the new settings.
func (p *Server) Reload() {
	p.t.Helper()
	master := p.Leader()
	old := testenv.SessionPIDs(master)
	if out, err := p.run(time.Minute, p.postfix, "-c", p.ConfigDir, "reload"); err != nil {
		p.t.Fatalf("postfixenv: postfix reload: %v\n%s\nlog:\n%s", err, out, p.Log())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		alive := 0
		for _, pid := range old {
			if pid != master && testenv.ProcessAlive(pid) {
				alive++
			}
		}
		if alive == 0 {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postfixenv: postfix reload: %d processes of the old configuration still running after 30s", alive)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.WaitBanner(30 * time.Second); err != nil {
		p.t.Fatalf("postfixenv: postfix reload: %v\nlog:\n%s", err, p.Log())
	}
}

// masterPID reads the master's pid file.
func (p *Server) masterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("bad master.pid %q", b)
	}
	return pid, nil
}
