package mtaqueue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sendmail is a Sendmail instance's queue. Sendmail has no postsuper:
//
//   - list: its queue directory, where qfID is a queued message and hfID
//     a quarantined one (the held state, as Postfix's hold queue);
//   - hold: sendmail -C CF -Q<reason> -qI<id> quarantines;
//   - release: sendmail -C CF -qQ -qI<id> -Q takes it out of
//     quarantine (-Q without a reason);
//   - delete: what Sendmail's operations guide tells operators to do,
//     remove the message's control file (qf or hf) and then its data
//     (df) and transcript (xf) files, under the control file's lock
//     (waiting up to lockWait for a queue runner delivering it).
//
// -qI selects by substring of the id: Act leaves an id that is part of
// another queued message's id alone (Ambiguous).
type Sendmail struct {
	CF       string // sendmail.cf, e.g. /etc/mail/sendmail.cf
	QueueDir string // its QueueDirectory
	// Reason is the quarantine reason hold gives (printable ASCII; others
	// are replaced); empty: "held by stormguard".
	Reason   string
	sendmail string
}

var _ MTA = (*Sendmail)(nil)

// NewSendmail finds the sendmail binary (sendmailPath, or sendmail in
// PATH, /usr/sbin or /usr/lib when empty) and the queue directory of the
// instance run from cf: queueDir, or cf's QueueDirectory when empty.
func NewSendmail(cf, queueDir, sendmailPath string) (*Sendmail, error) {
	if cf == "" {
		return nil, errors.New("mtaqueue: sendmail: the path of sendmail.cf is needed, e.g. /etc/mail/sendmail.cf")
	}
	if queueDir == "" {
		var err error
		if queueDir, err = cfQueueDir(cf); err != nil {
			return nil, err
		}
	}
	if strings.ContainsAny(queueDir, "*?[") {
		return nil, fmt.Errorf("mtaqueue: sendmail: QueueDirectory %s is a set of queues; name one queue directory", queueDir)
	}
	if sendmailPath == "" {
		sendmailPath = "sendmail"
	}
	bin, err := lookPath(sendmailPath)
	if err != nil {
		return nil, err
	}
	return &Sendmail{CF: cf, QueueDir: queueDir, sendmail: bin}, nil
}

// cfQueueDir reads "O QueueDirectory=" from a sendmail.cf.
func cfQueueDir(cf string) (string, error) {
	f, err := os.Open(cf)
	if err != nil {
		return "", fmt.Errorf("mtaqueue: sendmail: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "O QueueDirectory="); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("mtaqueue: sendmail: %s: %w", cf, err)
	}
	return "", fmt.Errorf("mtaqueue: sendmail: %s sets no QueueDirectory; name the queue directory", cf)
}

// Name implements MTA.
func (s *Sendmail) Name() string { return "sendmail (" + s.CF + ", queue " + s.QueueDir + ")" }

// qfDir is where the control files are: the queue directory, or its qf
// subdirectory when Sendmail was set up with one.
func (s *Sendmail) qfDir() string {
	if st, err := os.Stat(filepath.Join(s.QueueDir, "qf")); err == nil && st.IsDir() {
		return filepath.Join(s.QueueDir, "qf")
	}
	return s.QueueDir
}

// List implements MTA from the control files' names.
func (s *Sendmail) List(_ context.Context) ([]Message, error) {
	ents, err := os.ReadDir(s.qfDir())
	if err != nil {
		return nil, fmt.Errorf("mtaqueue: list %s: %w", s.Name(), err)
	}
	var ms []Message
	for _, e := range ents {
		name := e.Name()
		if len(name) < 3 || !e.Type().IsRegular() {
			continue
		}
		switch name[:2] {
		case "qf":
			ms = append(ms, Message{ID: name[2:], Queue: "queue"})
		case "hf":
			ms = append(ms, Message{ID: name[2:], Queue: "quarantine", Held: true})
		}
	}
	return ms, nil
}

// reason is the quarantine reason, one line of printable ASCII: Sendmail
// writes it into the control file as a line of its own.
func (s *Sendmail) reason() string {
	r := strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e {
			return ' '
		}
		return c
	}, s.Reason)
	if r = strings.TrimSpace(r); r == "" {
		r = "held by stormguard"
	}
	if len(r) > 200 {
		r = r[:200]
	}
	return r
}

// apply implements MTA: one sendmail run per id for hold and release
// (-qI takes one), file removal for delete.
func (s *Sendmail) apply(ctx context.Context, a Action, ids []string) error {
	var errs []error
	for _, id := range ids {
		if !ValidID(id) { // Act never passes one; this is the last guard
			return fmt.Errorf("mtaqueue: refusing queue id %q", id)
		}
		var err error
		switch a {
		case Hold:
			_, err = run(ctx, "", s.sendmail, "-C", s.CF, "-Q"+s.reason(), "-qI"+id)
		case Release:
			// A bare -Q, last: "-Q ''" is taken as a reason and does
			// nothing to a quarantined message [seen, 8.17].
			_, err = run(ctx, "", s.sendmail, "-C", s.CF, "-qQ", "-qI"+id, "-Q")
		case Delete:
			err = s.remove(ctx, id)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lockWait is how long remove waits for a queue runner to let go of a
// message: one delivery attempt, usually well under a second.
const lockWait = 10 * time.Second

// remove deletes one message's files, control file first (so no queue
// runner starts on it), under the control file's lock: a queue runner
// delivering it holds that lock, and remove waits for it up to lockWait.
func (s *Sendmail) remove(ctx context.Context, id string) error {
	dir := s.qfDir()
	deadline := time.Now().Add(lockWait)
	for {
		done, err := s.tryRemove(dir, id)
		if done || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sendmail: %s is being delivered (its control file stayed locked for %s); try again", id, lockWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sendmail: %s: %w", id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tryRemove removes id's files if its control file can be locked now;
// done is false when a queue runner holds it.
func (s *Sendmail) tryRemove(dir, id string) (done bool, err error) {
	var ctl string
	for _, p := range []string{"qf", "hf"} {
		if _, err := os.Stat(filepath.Join(dir, p+id)); err == nil {
			ctl = filepath.Join(dir, p+id)
			break
		}
	}
	if ctl == "" {
		return true, nil // gone meanwhile: Act sees it in the second listing
	}
	f, err := os.OpenFile(ctl, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // renamed (quarantined, or rewritten) meanwhile: look again
	}
	if err != nil {
		return false, fmt.Errorf("sendmail: %s: %w", id, err)
	}
	defer f.Close()
	// Sendmail locks with flock or fcntl, as it was built; take both.
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false, nil
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	if syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk) != nil {
		return false, nil
	}
	// A queue runner rewrites the control file by renaming a new one
	// over it: the lock must be on the file the name still points to.
	held, err1 := f.Stat()
	now, err2 := os.Stat(ctl)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		return false, nil
	}
	if err := os.Remove(ctl); err != nil {
		return false, fmt.Errorf("sendmail: %s: %w", id, err)
	}
	for _, p := range []string{"df", "xf"} {
		for _, d := range []string{s.QueueDir, filepath.Join(s.QueueDir, p)} {
			if err := os.Remove(filepath.Join(d, p+id)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return true, fmt.Errorf("sendmail: %s: %w", id, err)
			}
		}
	}
	return true, nil
}
