package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// QueueEntry is one message in a Postfix queue, one line of postqueue -j.
type QueueEntry struct {
	QueueName  string      `json:"queue_name"` // incoming, active, deferred, hold, maildrop
	QueueID    string      `json:"queue_id"`
	Sender     string      `json:"sender"`
	Recipients []QueueRcpt `json:"recipients"`
}

// QueueRcpt is one recipient of a QueueEntry.
type QueueRcpt struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason"` // why it is still queued, when it was tried
}

// Queue lists the instance's queue with postqueue -c DIR -j: every
// message in it, held or not, in no particular order.
func (p *Postfix) Queue() []QueueEntry {
	p.t.Helper()
	postqueue := LookPath(p.t, "postqueue", "install the Debian package postfix")
	out, err := p.run(30*time.Second, postqueue, "-c", p.ConfigDir, "-j")
	if err != nil {
		p.t.Fatalf("testenv: postqueue -j: %v\n%s", err, out)
	}
	var q []QueueEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			p.t.Fatalf("testenv: postqueue -j: line %q: %v", sc.Text(), err)
		}
		q = append(q, e)
	}
	return q
}

// queuedAs finds the queue id in an MTA's 250 after the final dot:
// Postfix's "2.0.0 Ok: queued as ID", Sendmail's "2.0.0 ID Message
// accepted for delivery".
var queuedAs = regexp.MustCompile(`(?:queued as ([0-9A-Za-z]+))|(?:^2\.0\.0 ([0-9A-Za-z]+) Message accepted)`)

// QueuedAs returns the queue id the MTA gave in its answer to a message,
// or "" if r names none.
func QueuedAs(r Reply) string {
	m := queuedAs.FindStringSubmatch(r.Text)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}

// Quarantined returns the quarantine reason Sendmail recorded for queue id
// (the "q" line of its queue file; a quarantined message's file is named
// hfID instead of qfID), and whether the message is quarantined.
func (s *Sendmail) Quarantined(id string) (string, bool) {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "mqueue", "hf"+id))
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		s.t.Fatalf("testenv: sendmail: %v", err)
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
func (s *Sendmail) QueueFiles() string {
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

// Postsuper runs postsuper -c DIR with args (e.g. "-H", ID to release a
// held message) as an operator would.
func (p *Postfix) Postsuper(args ...string) {
	p.t.Helper()
	postsuper := LookPath(p.t, "postsuper", "install the Debian package postfix")
	out, err := p.run(30*time.Second, postsuper, append([]string{"-c", p.ConfigDir}, args...)...)
	if err != nil {
		p.t.Fatalf("testenv: postsuper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Run runs Sendmail's own binary with -C its sendmail.cf and args (e.g.
// "-qQ", "-Q", "-qIID" to release a quarantined message) inside the
// daemon's mount and UTS namespaces, where its host name and files are,
// as an operator would run it on the host; it returns the output.
func (s *Sendmail) Run(args ...string) string {
	s.t.Helper()
	nsenter := LookPath(s.t, "nsenter", "install util-linux")
	sendmail := filepath.Join(sendmailTree(s.t), "usr/libexec/sendmail/sendmail")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nsenter, append([]string{"-t", strconv.Itoa(s.leader), "-m", "-u", "--", sendmail, "-C", s.CF}, args...)...)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("testenv: sendmail %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
