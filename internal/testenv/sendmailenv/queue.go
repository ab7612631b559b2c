// Sendmail's queue as an operator sees it: quarantined messages, the
// queue files, and Sendmail's own binary run inside the daemon's
// namespaces.

package sendmailenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
)

// Quarantined returns the quarantine reason Sendmail recorded for queue id
// (the "q" line of its queue file; a quarantined message's file is named
// hfID instead of qfID), and whether the message is quarantined.
func (s *Server) Quarantined(id string) (string, bool) {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "mqueue", "hf"+id))
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		s.t.Fatalf("sendmailenv: sendmail: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if reason, ok := strings.CutPrefix(line, "q"); ok {
			return reason, true
		}
	}
	return "", true
}

// QueueFiles lists the names of the files in Sendmail's queue directory
// (qf, hf, df, ...), for a test's failure message.
func (s *Server) QueueFiles() string {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.Dir, "mqueue"))
	if err != nil {
		return fmt.Sprintf("(cannot read mqueue: %v)", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// Run runs Sendmail's own binary with -C its sendmail.cf and args (e.g.
// "-qQ", "-Q", "-qIID" to release a quarantined message) inside the
// daemon's mount and UTS namespaces, where its host name and files are,
// as an operator would run it on the host; it returns the output.
func (s *Server) Run(args ...string) string {
	s.t.Helper()
	nsenter := testenv.LookPath(s.t, "nsenter", "install util-linux")
	sendmail := filepath.Join(sendmailTree(s.t), "usr/libexec/sendmail/sendmail")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nsenter, append([]string{"-t", strconv.Itoa(s.Leader()), "-m", "-u", "--", sendmail, "-C", s.CF}, args...)...)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("sendmailenv: sendmail %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
