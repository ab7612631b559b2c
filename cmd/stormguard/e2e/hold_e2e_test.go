package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/sendmailenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
)

// holdYAML: policy.action hold, 3 replies per window, the memory store.
const holdYAML = "lists:\n  " + staffList + ": 3000\npolicy:\n  action: hold\n  max_replies: 3\n"

// TestHoldThroughPostfix: with policy.action hold, a storm through a real
// Postfix: the original and the replies within max_replies are queued
// normally (and delivered to the sink), the reply that crosses the limit
// and the next are accepted (250) into Postfix's hold queue, as
// postqueue -j shows, with the reason naming the thread in Postfix's log;
// postsuper -H releases one, which then reaches the sink.
func TestHoldThroughPostfix(t *testing.T) {
	sink := smtpenv.StartSink(t)
	n := startNode(t, holdYAML, sink)

	const subject = "Hold test <b>bold</b>"
	root := "hold-pf@example.org"
	thread := threadOf(root)
	queued := map[string]string{} // Message-ID -> queue id
	accept := func(what, id string, r smtpenv.Reply) {
		t.Helper()
		qid := smtpenv.QueuedAs(r)
		if !r.OK() || qid == "" {
			t.Fatalf("%s: %v, want 250 queued as ID", what, r)
		}
		queued[id] = qid
	}
	accept("original", root, send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)))
	const maxReplies = 3
	for i := 1; i <= maxReplies+2; i++ {
		accept(fmt.Sprintf("reply-all %d", i), fmt.Sprintf("reply-%d-%s", i, root), replyAll(t, n, i, root, staffList, subject))
	}
	held := []string{fmt.Sprintf("reply-%d-%s", maxReplies+1, root), fmt.Sprintf("reply-%d-%s", maxReplies+2, root)}
	n.log.wait(t, 0, "action=hold", "rule=max_replies", "thread="+string(thread), "queue_id="+queued[held[0]])
	n.log.wait(t, 0, "action=hold", "rule=blocked", "queue_id="+queued[held[1]])

	// The held ones stay in the hold queue; poll until both are there
	// (cleanup files them before the 250, but be patient with the disk).
	var inHold map[string]postfixenv.QueueEntry
	deadline := time.Now().Add(20 * time.Second)
	for {
		inHold = map[string]postfixenv.QueueEntry{}
		for _, e := range n.postfix.Queue() {
			if e.QueueName == "hold" {
				inHold[e.QueueID] = e
			}
		}
		if len(inHold) >= len(held) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(inHold) != len(held) {
		t.Fatalf("hold queue has %d messages %v, want exactly the %d replies past the limit %v", len(inHold), inHold, len(held), queued)
	}
	for i, id := range held {
		e, ok := inHold[queued[id]]
		if !ok {
			t.Fatalf("%s (queue id %s) is not in the hold queue %v", id, queued[id], inHold)
		}
		if want := fmt.Sprintf("user%d@example.org", maxReplies+1+i); e.Sender != want || len(e.Recipients) != 2 {
			t.Errorf("held %s: sender %q, %d recipients; want %s to 2", e.QueueID, e.Sender, len(e.Recipients), want)
		}
	}
	t.Logf("postqueue -j hold queue: %+v", inHold)
	// Postfix logs the hold but not the milter's reason (milter8.c drops
	// it): the thread is in stormguard's own decision line above.
	for _, id := range held {
		if want := queued[id] + ": milter-hold: END-OF-MESSAGE"; !strings.Contains(n.postfix.Log(), want) {
			t.Errorf("postfix log has no %q line:\n%s", want, n.postfix.Log())
		}
	}

	// Everything before the crossing was delivered, nothing held was.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i <= maxReplies; i++ {
		id := root
		if i > 0 {
			id = fmt.Sprintf("reply-%d-%s", i, root)
		}
		if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == "<"+id+">" }); err != nil {
			t.Fatalf("%s was accepted unheld but never delivered: %v", id, err)
		}
	}
	for _, m := range sink.Messages() {
		for _, id := range held {
			if m.Header("Message-ID") == "<"+id+">" {
				t.Fatalf("held %s was delivered", id)
			}
		}
	}

	// The operator releases one with postsuper -H: it is delivered, the
	// other stays held.
	n.postfix.Postsuper("-H", queued[held[0]])
	if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == "<"+held[0]+">" }); err != nil {
		t.Fatalf("released %s never delivered: %v\n%s", held[0], err, n.postfix.Log())
	}
	stillHeld := false
	for _, e := range n.postfix.Queue() {
		stillHeld = stillHeld || e.QueueID == queued[held[1]] && e.QueueName == "hold"
	}
	if !stillHeld {
		t.Errorf("%s left the hold queue when only %s was released", held[1], held[0])
	}
}

// TestHoldThroughSendmail: the same storm through a real Sendmail 8.17
// with the README's milter line: the crossing reply is accepted and
// quarantined; its queue file (hf…) carries the reason naming the thread,
// mailq -qQ lists it, and sendmail -qQ -Q -qIID releases it to the sink.
func TestHoldThroughSendmail(t *testing.T) {
	line := readmeSendmailLine(t)
	sink := smtpenv.StartSink(t)
	d := startDaemon(t, holdYAML)
	sm := sendmailenv.Start(t, sendmailenv.Options{RelayTo: sink.Addr, Milter: withPort(line, d.addr)})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sendmail log:\n%s", sm.Log())
		}
	})
	send := func(from string, rcpts []string, data []byte) smtpenv.Reply {
		t.Helper()
		r, err := smtpenv.Send(sm.Addr, from, rcpts, data)
		if err != nil {
			t.Fatalf("smtp: %v", err)
		}
		return r
	}
	const subject = "Hold test"
	root := "hold-sm@example.org"
	thread := threadOf(root)
	if r := send(boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	const maxReplies = 3
	var unheld []string
	for i := 1; i <= maxReplies; i++ {
		r := send(fmt.Sprintf("user%d@example.org", i), []string{staffList, boss}, replyAllMail(i, root, staffList, subject))
		if !r.OK() || smtpenv.QueuedAs(r) == "" {
			t.Fatalf("reply-all %d: %v, want 250 with a queue id", i, r)
		}
		unheld = append(unheld, smtpenv.QueuedAs(r))
	}
	r := send(fmt.Sprintf("user%d@example.org", maxReplies+1), []string{staffList, boss}, replyAllMail(maxReplies+1, root, staffList, subject))
	qid := smtpenv.QueuedAs(r)
	if !r.OK() || qid == "" {
		t.Fatalf("reply-all %d: %v, want 250 (held) with a queue id", maxReplies+1, r)
	}
	d.log.wait(t, 0, "action=hold", "rule=max_replies", "thread="+string(thread))

	want := milter.HoldReason(thread, policy.RuleMaxReplies)
	var reason string
	var ok bool
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if reason, ok = sm.Quarantined(qid); ok || time.Now().After(deadline) {
			break
		}
	}
	if !ok || reason != want {
		t.Fatalf("reply-all %d (queue id %s): quarantined %v with %q, want %q; mqueue: %s", maxReplies+1, qid, ok, reason, want, sm.QueueFiles())
	}
	t.Logf("sendmail quarantined %s: %s", qid, reason)
	for _, id := range unheld {
		if _, held := sm.Quarantined(id); held {
			t.Errorf("reply within the limit %s was quarantined", id)
		}
	}
	for _, m := range sink.Messages() {
		if strings.HasPrefix(m.Header("Message-ID"), fmt.Sprintf("<reply-%d-", maxReplies+1)) {
			t.Errorf("held reply %s was delivered", m.Header("Message-ID"))
		}
	}

	// mailq -qQ lists it with the reason; sendmail -qQ -Q -qIID releases
	// it (as docs/operations.md says), and it reaches the sink.
	if out := sm.Run("-bp", "-qQ"); !strings.Contains(out, qid) || !strings.Contains(out, string(thread)) {
		t.Errorf("mailq -qQ does not list %s with the thread:\n%s", qid, out)
	}
	out := sm.Run("-qQ", "-Q", "-qI"+qid)
	t.Logf("sendmail -qQ -Q -qI%s: %q", qid, out)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	heldID := fmt.Sprintf("<reply-%d-%s>", maxReplies+1, root)
	if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == heldID }); err != nil {
		t.Fatalf("released %s never delivered: %v; mqueue: %s", heldID, err, sm.QueueFiles())
	}
}
