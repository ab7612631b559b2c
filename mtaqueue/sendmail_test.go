package mtaqueue_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/sendmailenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/mtaqueue"
)

// sendmailQueue returns the ids whose control file is in dir: "qf" for a
// queued message, "hf" for a quarantined one.
func sendmailQueue(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	q := map[string]string{}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "qf") || strings.HasPrefix(n, "hf") {
			q[n[2:]] = n[:2]
		}
	}
	return q
}

func TestSendmailActsOnChosenIDsOnly(t *testing.T) {
	// Nothing listens at the relay: every message stays queued.
	sm := sendmailenv.Start(t, sendmailenv.Options{RelayTo: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))})
	var ids []string
	for i := range 4 {
		data := smtpenv.NewMessage().Add("From", "sender@example.com").Add("To", "rcpt@example.org").
			Add("Subject", fmt.Sprintf("queued %d", i)).Add("Message-ID", fmt.Sprintf("<smq-%d@example.com>", i)).
			SetBody("Hello.\n").Bytes()
		r, err := smtpenv.Send(sm.Addr, "sender@example.com", []string{"rcpt@example.org"}, data)
		if err != nil || !r.OK() {
			t.Fatalf("send %d: %v %v", i, r, err)
		}
		f := strings.Fields(r.Text) // 2.0.0 ID Message accepted for delivery
		if len(f) < 2 || !mtaqueue.ValidID(f[1]) {
			t.Fatalf("send %d: no queue id in %q", i, r.Text)
		}
		ids = append(ids, f[1])
	}
	deadline := time.Now().Add(30 * time.Second)
	for q := sendmailQueue(t, sm.QueueDir()); len(q) != 4; q = sendmailQueue(t, sm.QueueDir()) {
		if time.Now().After(deadline) {
			t.Fatalf("queue %v, want the 4 messages %v", q, ids)
		}
		time.Sleep(50 * time.Millisecond)
	}

	mta, err := mtaqueue.NewSendmail(sm.CF, "", sm.Tool())
	if err != nil {
		t.Fatal(err)
	}
	if mta.QueueDir != sm.QueueDir() {
		t.Errorf("QueueDirectory read from %s: %q, want %q", sm.CF, mta.QueueDir, sm.QueueDir())
	}
	mta.Reason = "stormguard: thread 0123456789abcdef\nH??Bcc: x"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	res, err := mtaqueue.Act(ctx, mta, mtaqueue.Delete, []string{ids[0], "ALL", "ABCDEF123456"})
	if err != nil || len(res) != 3 || res[0].Outcome != mtaqueue.Deleted || res[1].Outcome != mtaqueue.Invalid || res[2].Outcome != mtaqueue.Gone {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	if q, want := sendmailQueue(t, sm.QueueDir()), map[string]string{ids[1]: "qf", ids[2]: "qf", ids[3]: "qf"}; !maps.Equal(q, want) {
		t.Fatalf("after delete: %v, want %v", q, want)
	}
	if _, err := os.Stat(filepath.Join(sm.QueueDir(), "df"+ids[0])); !os.IsNotExist(err) {
		t.Errorf("after delete: df%s: %v, want it removed", ids[0], err)
	}

	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Hold, []string{ids[1]})
	if err != nil || res[0].Outcome != mtaqueue.Held {
		t.Fatalf("hold: %+v, %v", res, err)
	}
	if q, want := sendmailQueue(t, sm.QueueDir()), map[string]string{ids[1]: "hf", ids[2]: "qf", ids[3]: "qf"}; !maps.Equal(q, want) {
		t.Fatalf("after hold: %v, want %v", q, want)
	}
	// Sendmail's own listing of quarantined messages shows it, with the
	// reason on one line.
	out, err := exec.Command(sm.Tool(), "-C", sm.CF, "-bp", "-qQ").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ids[1]) || !strings.Contains(string(out), "stormguard: thread 0123456789abcdef H??Bcc: x") {
		t.Errorf("mailq -qQ: %v\n%s", err, out)
	}
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Hold, []string{ids[1], ids[2]})
	if err != nil || res[0].Outcome != mtaqueue.AlreadyHeld || res[1].Outcome != mtaqueue.Held {
		t.Fatalf("hold again: %+v, %v", res, err)
	}
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Release, []string{ids[1], ids[3]})
	if err != nil || res[0].Outcome != mtaqueue.Released || res[1].Outcome != mtaqueue.NotHeld {
		t.Fatalf("release: %+v, %v", res, err)
	}
	if q, want := sendmailQueue(t, sm.QueueDir()), map[string]string{ids[1]: "qf", ids[2]: "hf", ids[3]: "qf"}; !maps.Equal(q, want) {
		t.Fatalf("after release: %v, want %v", q, want)
	}
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Delete, []string{ids[2]})
	if err != nil || res[0].Outcome != mtaqueue.Deleted || res[0].Queue != "quarantine" {
		t.Fatalf("delete held: %+v, %v", res, err)
	}

	// While a queue runner holds a message's lock, delete waits for it.
	qf := filepath.Join(sm.QueueDir(), "qf"+ids[3])
	f, err := os.Open(qf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	type actResult struct {
		res []mtaqueue.Result
		err error
	}
	done := make(chan actResult, 1)
	go func() {
		res, err := mtaqueue.Act(ctx, mta, mtaqueue.Delete, []string{ids[3]})
		done <- actResult{res, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("delete of a locked message returned at once: %+v, %v", r.res, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := os.Stat(qf); err != nil {
		t.Fatalf("locked message removed: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.res[0].Outcome != mtaqueue.Deleted {
		t.Fatalf("delete after the lock was let go: %+v, %v", r.res, r.err)
	}
}
