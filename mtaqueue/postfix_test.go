package mtaqueue_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/mtaqueue"
)

// queuedPostfix starts a private Postfix that keeps every message in its
// deferred queue, sends it n messages and returns it with their queue ids,
// once every one of them is deferred.
func queuedPostfix(t *testing.T, n int) (*postfixenv.Server, []string) {
	t.Helper()
	pf := postfixenv.Start(t, postfixenv.Options{
		RelayTo: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), // nothing listens: never reached anyway
		Extra:   postfixenv.DeferAll,
	})
	ids := make([]string, n)
	for i := range ids {
		data := smtpenv.NewMessage().
			Add("From", "sender@example.com").
			Add("To", "rcpt@example.org").
			Add("Subject", fmt.Sprintf("queued %d", i)).
			Add("Message-ID", fmt.Sprintf("<mtaqueue-%d@example.com>", i)).
			SetBody("Hello.\n").Bytes()
		r, err := smtpenv.Send(pf.Addr, "sender@example.com", []string{"rcpt@example.org"}, data)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		ids[i] = smtpenv.QueueID(t, r)
	}
	pf.WaitQueue("every message deferred", func(q map[string]string) bool {
		for _, id := range ids {
			if q[id] != "deferred" {
				return false
			}
		}
		return len(q) == n
	})
	return pf, ids
}

func outcomes(rs []mtaqueue.Result) map[string]mtaqueue.Outcome {
	m := map[string]mtaqueue.Outcome{}
	for _, r := range rs {
		m[r.ID] = r.Outcome
	}
	return m
}

func TestPostfixActsOnChosenIDsOnly(t *testing.T) {
	pf, ids := queuedPostfix(t, 5)
	mta, err := mtaqueue.NewPostfix(pf.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	list, err := mta.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Fatalf("List: %+v, want the 5 messages", list)
	}
	for _, m := range list {
		if m.Queue != "deferred" || m.Held {
			t.Errorf("List: %+v, want deferred, not held", m)
		}
	}

	// Delete two, with an id that is not in the queue and hostile ones
	// that must never reach postsuper ("ALL" would empty the queue).
	const absent = "ABCDEF123456"
	res, err := mtaqueue.Act(ctx, mta, mtaqueue.Delete, []string{ids[0], "ALL", ids[1], absent, "x\nALL", ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]mtaqueue.Outcome{ids[0]: mtaqueue.Deleted, ids[1]: mtaqueue.Deleted, absent: mtaqueue.Gone,
		"ALL": mtaqueue.Invalid, "x\nALL": mtaqueue.Invalid}
	if got := outcomes(res); !maps.Equal(got, want) || len(res) != 5 {
		t.Errorf("delete: %+v, want %v", res, want)
	}
	if res[0].Queue != "deferred" || res[3].Queue != "" {
		t.Errorf("delete: where they were: %+v", res)
	}
	q := pf.QueueNames()
	if want := map[string]string{ids[2]: "deferred", ids[3]: "deferred", ids[4]: "deferred"}; !maps.Equal(q, want) {
		t.Fatalf("after delete: queue %v, want %v", q, want)
	}

	// Hold one; holding it again and releasing one not held do nothing.
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Hold, []string{ids[2]})
	if err != nil || len(res) != 1 || res[0].Outcome != mtaqueue.Held {
		t.Fatalf("hold: %+v, %v", res, err)
	}
	if want := map[string]string{ids[2]: "hold", ids[3]: "deferred", ids[4]: "deferred"}; !maps.Equal(pf.QueueNames(), want) {
		t.Fatalf("after hold: queue %v, want %v", pf.QueueNames(), want)
	}
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Hold, []string{ids[2], ids[3]})
	if got, want := outcomes(res), map[string]mtaqueue.Outcome{ids[2]: mtaqueue.AlreadyHeld, ids[3]: mtaqueue.Held}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("hold again: %+v, %v; want %v", res, err, want)
	}
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Release, []string{ids[2], ids[4], ids[0]})
	want = map[string]mtaqueue.Outcome{ids[2]: mtaqueue.Released, ids[4]: mtaqueue.NotHeld, ids[0]: mtaqueue.Gone}
	if got := outcomes(res); err != nil || !maps.Equal(got, want) {
		t.Fatalf("release: %+v, %v; want %v", res, err, want)
	}
	q = pf.QueueNames()
	if q[ids[2]] == "hold" || q[ids[2]] == "" || q[ids[3]] != "hold" || q[ids[4]] != "deferred" || len(q) != 3 {
		t.Fatalf("after release: queue %v: want %s out of hold, %s held, %s deferred", q, ids[2], ids[3], ids[4])
	}

	// A held message is deleted too; the second delete finds it gone.
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Delete, []string{ids[3]})
	if err != nil || res[0].Outcome != mtaqueue.Deleted || res[0].Queue != "hold" {
		t.Fatalf("delete held: %+v, %v", res, err)
	}
	res, err = mtaqueue.Act(ctx, mta, mtaqueue.Delete, []string{ids[3]})
	if err != nil || res[0].Outcome != mtaqueue.Gone {
		t.Fatalf("delete again: %+v, %v", res, err)
	}
	if q := pf.QueueNames(); len(q) != 2 || q[ids[2]] == "" || q[ids[4]] == "" {
		t.Fatalf("at the end: queue %v, want %s and %s", q, ids[2], ids[4])
	}
}

func TestPostfixMissingConfig(t *testing.T) {
	if _, err := mtaqueue.NewPostfix(""); err == nil {
		t.Error("NewPostfix(\"\"): no error")
	}
}
