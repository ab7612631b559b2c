package testenv

import (
	"os"
	"path/filepath"
	"strings"
)

// Tool returns the path of an executable, written into the instance's
// directory, that runs the instance's sendmail binary with the arguments
// it is given (e.g. -C s.CF -qQ -qIID -Q ""), as an operator would run
// /usr/sbin/sendmail on the host: in new mount and UTS namespaces set up
// as the daemon's (host name SendmailHostname, the instance's /etc/hosts
// and /etc/resolv.conf), so Sendmail does not sleep a minute over an
// unqualified host name or wait on DNS.
func (s *Sendmail) Tool() string {
	s.t.Helper()
	unshare := LookPath(s.t, "unshare", "install util-linux")
	bin := filepath.Join(sendmailTree(s.t), "usr/libexec/sendmail/sendmail")
	q := func(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }
	script := "#!/bin/sh\n# Written by internal/testenv: the test Sendmail's binary in its namespaces.\n" +
		"exec " + q(unshare) + " --mount --uts --propagation private -- /bin/sh -c " +
		q(`mount -n --bind "$1" /etc/hosts && mount -n --bind "$2" /etc/resolv.conf && hostname "$3" && shift 3 && exec "$@"`) +
		" sh " + q(filepath.Join(s.Dir, "etc/hosts")) + " " + q(filepath.Join(s.Dir, "etc/resolv.conf")) + " " +
		q(SendmailHostname) + " " + q(bin) + ` "$@"` + "\n"
	path := filepath.Join(s.Dir, "sendmail-tool")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		s.t.Fatalf("testenv: sendmail: %v", err)
	}
	return path
}

// QueueDir is the instance's queue directory.
func (s *Sendmail) QueueDir() string { return filepath.Join(s.Dir, "mqueue") }
