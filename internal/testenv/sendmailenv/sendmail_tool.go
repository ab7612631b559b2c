package sendmailenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stormguard/stormguard/internal/testenv"
)

// Tool returns the path of an executable, written into the instance's
// directory, that runs the instance's sendmail binary with the arguments
// it is given, inside the daemon's mount and UTS namespaces as Run does:
// for code under test that takes the path of a sendmail binary (e.g.
// stormguard queue --sendmail-bin), as an operator's /usr/sbin/sendmail.
func (s *Server) Tool() string {
	s.t.Helper()
	nsenter := testenv.LookPath(s.t, "nsenter", "install util-linux")
	bin := filepath.Join(sendmailTree(s.t), "usr/libexec/sendmail/sendmail")
	q := func(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }
	script := "#!/bin/sh\n# Written by internal/testenv/sendmailenv: the test Sendmail's binary in its namespaces.\n" +
		"exec " + q(nsenter) + " -t " + strconv.Itoa(s.Leader()) + " -m -u -- " + q(bin) + ` "$@"` + "\n"
	path := filepath.Join(s.Dir, "sendmail-tool")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		s.t.Fatalf("sendmailenv: sendmail: %v", err)
	}
	return path
}

// QueueDir is the instance's queue directory.
func (s *Server) QueueDir() string { return filepath.Join(s.Dir, "mqueue") }
