package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/mtaqueue"
	"github.com/stormguard/stormguard/policy"
)

// The command's work once it has the thread's queue ids: acting only on
// this node's ids, whatever else is queued, and printing hostile text
// tamed. The ids here are the real Postfix's; the store's part is proven
// by TestQueueThroughPostfix.
func TestQueueActsOnThisNodesIDs(t *testing.T) {
	// A Postfix whose destination never takes mail: every message stays deferred.
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), Extra: postfixenv.DeferAll})
	var ids []string
	for i := range 4 {
		subject := fmt.Sprintf("queued %d", i)
		r, err := smtpenv.Send(pf.Addr, "someone@example.com", []string{"rcpt@example.org"}, smtpenv.NewMessage().
			Add("From", "someone@example.com").Add("To", "rcpt@example.org").Add("Subject", subject).
			Add("Message-ID", "<"+strings.ReplaceAll(subject, " ", ".")+"@example.com>").SetBody("Hello.\n").Bytes())
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		ids = append(ids, smtpenv.QueueID(t, r))
	}
	unrelated := ids[3]
	pf.WaitQueue("all deferred", func(q map[string]string) bool {
		return len(q) == 4 && q[ids[0]] == "deferred" && q[unrelated] == "deferred"
	})

	const evil = "\x1b]0;pwned\x07<script>x</script>\r\n\u009b31m\u202eevil@example.org"
	now := time.Now().UTC().Truncate(time.Second)
	refs := []history.QueueRef{
		{Node: "mx1", ID: ids[0], Kind: "original", Sender: "boss@example.org", Status: history.QueueAccepted, Time: now},
		{Node: "mx1", ID: ids[1], Kind: "reply", Sender: evil, Status: history.QueueAccepted, Time: now},
		// ids[2] is queued here, but the store says another node let it
		// through: it is not this node's to touch.
		{Node: "mx2\x1b[2J", ID: ids[2], Kind: "reply", Sender: "c@example.org", Status: history.QueueAccepted, Time: now},
		{Node: "mx1", ID: "ALL", Kind: "reply", Sender: "d@example.org", Status: history.QueueAccepted, Time: now},
	}
	thread := policy.ThreadID("0123456789abcdef")
	ctx := context.Background()
	noControls := func(what, out string) {
		t.Helper()
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b", "\u202e"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s prints %q:\n%q", what, bad, out)
			}
		}
	}

	var out bytes.Buffer
	if err := (&queueFlags{}).run(ctx, &out, thread, "", refs, nil); err != nil {
		t.Fatal(err)
	}
	noControls("the listing", out.String())
	t.Logf("queue prints:\n%s", out.String())
	for _, want := range []string{"NODE", ids[0], ids[1], ids[2], "mx2 [2J", "<script>x</script>", "evil@example.org", "original"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the listing lacks %q:\n%s", want, out.String())
		}
	}

	f := &queueFlags{delete: true, node: "mx1", mta: "postfix", postfixConfig: pf.ConfigDir}
	out.Reset()
	err := f.run(ctx, &out, thread, mtaqueue.Delete, refs, nil)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 ids on node mx1 were not done") {
		t.Errorf("delete with a forged id: error %v, want it to count the refused id", err)
	}
	noControls("delete", out.String())
	t.Logf("queue --delete prints:\n%s", out.String())
	for _, want := range []string{
		ids[0] + "  original  boss@example.org",
		"deleted (was in deferred)",
		"ALL",
		"not a queue id: refused, nothing done",
		"on node mx2 [2J: 1 ids (" + ids[2] + "); run there: stormguard queue " + string(thread) + " --delete",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("delete prints no %q:\n%s", want, out.String())
		}
	}
	if q, want := pf.QueueNames(), map[string]string{ids[2]: "deferred", unrelated: "deferred"}; !maps.Equal(q, want) {
		t.Fatalf("after delete: queue %v, want only %v", q, want)
	}

	out.Reset()
	refs = refs[:2]
	if err := f.run(ctx, &out, thread, mtaqueue.Delete, refs, nil); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "already gone: not in the queue"); n != 2 {
		t.Errorf("second delete: %d ids already gone, want 2:\n%s", n, out.String())
	}

	// Hold and release, read as JSON.
	refs = []history.QueueRef{{Node: "mx1", ID: unrelated, Kind: "reply", Sender: "e@example.org", Status: history.QueueAccepted, Time: now}}
	for _, step := range []struct {
		act     mtaqueue.Action
		outcome mtaqueue.Outcome
		queue   func(string) bool
	}{
		{mtaqueue.Hold, mtaqueue.Held, func(q string) bool { return q == "hold" }},
		{mtaqueue.Hold, mtaqueue.AlreadyHeld, func(q string) bool { return q == "hold" }},
		{mtaqueue.Release, mtaqueue.Released, func(q string) bool { return q != "hold" && q != "" }},
	} {
		out.Reset()
		jf := *f
		jf.asJSON = true
		if err := jf.run(ctx, &out, thread, step.act, refs, nil); err != nil {
			t.Fatalf("%s: %v", step.act, err)
		}
		var res queueResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("%s: %v\n%s", step.act, err, out.String())
		}
		if len(res.Results) != 1 || res.Results[0].Outcome != step.outcome || res.Node != "mx1" || res.Action != string(step.act) {
			t.Errorf("%s: %s", step.act, out.String())
		}
		if q := pf.QueueNames()[unrelated]; !step.queue(q) {
			t.Errorf("after %s (%s): %s is in queue %q", step.act, step.outcome, unrelated, q)
		}
	}
}

func TestQueueFlags(t *testing.T) {
	for _, args := range [][]string{
		{"queue", "0123456789abcdef", "--delete", "--hold"},
		{"queue", "not a thread"},
		{"queue"},
	} {
		if code := execute(context.Background(), args, io.Discard, io.Discard); code == 0 {
			t.Errorf("stormguard %s: exit 0", strings.Join(args, " "))
		}
	}
	f := &queueFlags{mta: "exim"}
	if _, err := f.open("0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "--mta") {
		t.Errorf("--mta exim: %v", err)
	}
}
