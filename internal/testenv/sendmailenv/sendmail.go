// Package sendmailenv starts a private Sendmail 8.17 daemon for tests
// (Start): its sendmail.cf built by m4 from a generated .mc, its queue and
// log in a directory under /tmp, its SMTP daemon on a free 127.0.0.1
// port, relaying to a sink, with a milter if the test names one. It runs
// in its own mount and UTS namespaces, so it neither reads nor changes the
// host's /etc/mail, /etc/hosts or host name. Tests read its queue and
// quarantine and run its binary as an operator would (queue.go,
// sendmail_tool.go).
//
// It needs root, util-linux (unshare, nsenter), mount and hostname, and
// Debian's sendmail packages unpacked (never installed: they conflict with
// postfix) by ./scripts/test.sh --setup; without them the test is skipped
// or fails as testenv says. Tests fetch nothing.
package sendmailenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/mtaenv"
)

// Hostname is $j of every test Sendmail, and its host name inside
// the UTS namespace it runs in.
const Hostname = "mta.stormguard.test"

// Options configures Start.
type Options struct {
	// RelayTo is the host:port, host an IP address, every accepted message
	// is relayed to (SMART_HOST), typically a Sink's Addr. Required.
	RelayTo string
	// Milter is one .mc line copied verbatim into sendmail.mc, e.g.
	// "INPUT_MAIL_FILTER(`stormguard', `S=inet:7357@127.0.0.1, F=T')".
	// Empty: no milter.
	Milter string
}

// Server is a private Sendmail 8.17 daemon run from Debian's packages
// unpacked in a cache directory (see sendmailTree), with its sendmail.cf
// built by m4 from a generated .mc, every file it uses under the MTA's
// directory, and its SMTP daemon on the MTA's port. It runs in its own
// mount and UTS namespaces: its host name is Hostname (an
// unqualified one costs a 60 s sleep at startup), and it sees a private
// /etc/hosts and an /etc/resolv.conf pointing at 127.0.0.1, so no DNS
// lookup can stall it. What it would send to syslog goes to LogFile
// (sendmail -d89.8 -D file). It is killed with all its children, and its
// directory removed, when the test ends.
type Server struct {
	*mtaenv.Instance
	MC string // the generated sendmail.mc
	CF string // sendmail.cf built from it

	t testing.TB
}

// Start starts a private Sendmail and waits until it greets with
// its 220 banner. It needs root (for the namespaces, and Sendmail runs as
// root), unshare, mount and hostname, and Debian's sendmail packages
// unpacked by ./scripts/test.sh (see sendmailTree); without them it calls
// Require.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Require(t, "root", "a private Sendmail must be started as root; run the tests as root")
	}
	relayHost, relayPort, err := net.SplitHostPort(opts.RelayTo)
	if err != nil || net.ParseIP(relayHost) == nil {
		t.Fatalf("sendmailenv: sendmail: RelayTo %q: want IP:port (%v)", opts.RelayTo, err)
	}
	if strings.ContainsAny(opts.Milter, "\r\n") {
		t.Fatalf("sendmailenv: sendmail: Milter must be one line: %q", opts.Milter)
	}
	unshare := testenv.LookPath(t, "unshare", "install util-linux")
	testenv.LookPath(t, "mount", "install mount")
	testenv.LookPath(t, "hostname", "install hostname")
	tree := sendmailTree(t)

	m := mtaenv.New(t, "sendmail", "sgsm-", "sendmail.log")
	s := &Server{Instance: m, t: t, MC: filepath.Join(m.Dir, "sendmail.mc"), CF: filepath.Join(m.Dir, "sendmail.cf")}
	files := map[string]string{
		// Sendmail's HostsFile, and bind-mounted over /etc/hosts with
		// resolv.conf over /etc/resolv.conf in the daemon's mount
		// namespace: before it reads sendmail.cf, Sendmail looks up its
		// own host name with the C library.
		"etc/hosts": "127.0.0.1 localhost\n127.0.0.1 " + Hostname + " mta\n" +
			"::1 localhost\n::1 " + Hostname + " mta\n",
		"etc/resolv.conf":      "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
		"etc/service.switch":   "hosts files\naliases files\n",
		"etc/aliases":          "",
		"etc/local-host-names": "",
		"etc/helpfile":         "",
		"sendmail.st":          "",
	}
	for _, dir := range []string{"etc", "mqueue"} {
		if err := os.Mkdir(filepath.Join(m.Dir, dir), 0o700); err != nil {
			t.Fatalf("sendmailenv: sendmail: %v", err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(m.Dir, name), []byte(content), 0o600); err != nil {
			t.Fatalf("sendmailenv: sendmail: %v", err)
		}
	}
	s.Start(func() (int, error) {
		if err := os.WriteFile(s.MC, []byte(s.mc(tree, relayHost, relayPort, opts.Milter)), 0o600); err != nil {
			return 0, err
		}
		var m4err strings.Builder
		m4 := exec.Command(filepath.Join(tree, "usr/bin/m4"), s.MC)
		m4.Stderr = &m4err
		cf, err := m4.Output()
		if err != nil {
			return 0, fmt.Errorf("%s: %v\n%s", m4, err, m4err.String())
		}
		if err := os.WriteFile(s.CF, cf, 0o600); err != nil {
			return 0, err
		}
		return s.daemon(unshare, filepath.Join(tree, "usr/libexec/sendmail/sendmail"))
	})
	return s
}

// mc renders sendmail.mc. MAIL_SETTINGS_DIR moves every file the macros
// would take from /etc/mail (aliases, helpfile, local-host-names,
// service.switch, relay-domains, ...) into the instance's etc/; the other
// paths are set one by one.
func (s *Server) mc(tree, relayHost, relayPort, milter string) string {
	d := s.Dir
	relay := "TCP $h " + relayPort
	lines := []string{
		"divert(-1)",
		"# Private Sendmail for a stormguard test; written by internal/testenv/sendmailenv.",
		"divert(0)dnl",
		"include(`" + filepath.Join(tree, "usr/share/sendmail/cf/m4/cf.m4") + "')dnl",
		"VERSIONID(`stormguard test instance')dnl",
		"OSTYPE(`linux')dnl",
		"define(`MAIL_SETTINGS_DIR', `" + d + "/etc/')dnl",
		"define(`confDOMAIN_NAME', `" + Hostname + "')dnl",
		"define(`confSMTP_LOGIN_MSG', `$j ESMTP Sendmail $v/$Z; " + s.Tag + "')dnl",
		"define(`QUEUE_DIR', `" + d + "/mqueue')dnl",
		"define(`STATUS_FILE', `" + d + "/sendmail.st')dnl",
		"define(`confPID_FILE', `" + d + "/sendmail.pid')dnl",
		"define(`confDEAD_LETTER_DROP', `" + d + "/dead.letter')dnl",
		"define(`confHOSTS_FILE', `" + d + "/etc/hosts')dnl",
		"define(`confDONT_PROBE_INTERFACES', `True')dnl",
		"define(`confTO_IDENT', `0s')dnl",
		"define(`confLOG_LEVEL', `14')dnl",
		// Two shared cores under go test -race: never refuse or queue
		// because of the load average.
		"define(`confQUEUE_LA', `1000')dnl",
		"define(`confREFUSE_LA', `1000')dnl",
		"define(`SMART_HOST', `esmtp:[" + relayHost + "]')dnl",
		"define(`ESMTP_MAILER_ARGS', `" + relay + "')dnl",
		"define(`RELAY_MAILER_ARGS', `" + relay + "')dnl",
		"FEATURE(`no_default_msa')dnl",
		"FEATURE(`nocanonify')dnl",
		"FEATURE(`accept_unresolvable_domains')dnl",
		// Only 127.0.0.1 can connect; any recipient domain is relayed.
		"FEATURE(`promiscuous_relay')dnl",
		"DAEMON_OPTIONS(`Port=" + strconv.Itoa(s.Port) + ", Addr=127.0.0.1, Name=MTA')dnl",
	}
	if milter != "" {
		lines = append(lines, milter+"dnl")
	}
	lines = append(lines, "MAILER(`smtp')dnl", "")
	return strings.Join(lines, "\n")
}

// daemon starts Sendmail in the foreground (-bD) in new mount and UTS
// namespaces (mount propagation private: nothing leaks to the host), as
// the leader of a new session, and returns the leader's process id.
func (s *Server) daemon(unshare, sendmail string) (int, error) {
	const script = `mount -n --bind "$1" /etc/hosts && mount -n --bind "$2" /etc/resolv.conf && hostname "$3" && shift 3 && exec "$@"`
	out, err := os.OpenFile(s.OutputFile(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd := exec.Command(unshare, "--mount", "--uts", "--propagation", "private", "--",
		"/bin/sh", "-c", script, "sh",
		filepath.Join(s.Dir, "etc/hosts"), filepath.Join(s.Dir, "etc/resolv.conf"), Hostname,
		sendmail, "-C", s.CF, "-D", s.LogFile, "-d89.8", "-bD", "-q5s")
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it
	return cmd.Process.Pid, nil
}

// sendmailTree returns the directory into which ./scripts/test.sh
// unpacked Debian's sendmail-bin, sendmail-cf, sendmail-base and m4
// packages (apt-get download, dpkg -x): $XDG_CACHE_HOME/stormguard-test/
// sendmail/root, or /var/cache/stormguard-test/sendmail/root. The script
// writes root/.complete last; without it, Require. Tests fetch nothing.
func sendmailTree(t testing.TB) string {
	t.Helper()
	cache := "/var/cache/stormguard-test/sendmail"
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		cache = filepath.Join(x, "stormguard-test", "sendmail")
	}
	tree := filepath.Join(cache, "root")
	if _, err := os.Stat(filepath.Join(tree, ".complete")); err != nil {
		testenv.Require(t, "Sendmail 8.17 (Debian's sendmail packages unpacked in "+tree+")",
			"run ./scripts/test.sh --setup as root: it downloads and unpacks them there; go test fetches nothing")
	}
	return tree
}
