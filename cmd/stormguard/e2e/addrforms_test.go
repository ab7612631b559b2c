package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// The lists of TestListAddressFormsThroughPostfix, and the members
// Postfix's virtual alias map expands them to.
const (
	everyone = "everyone@example.org"
	announce = "announce@example.org"
)

// addressForms are the ways an SMTP client can name a list in RCPT TO that
// Postfix (recipient_delimiter +, myorigin example.org) delivers to the
// list's members, each with its name in the test. Addresses go without
// the <> smtpenv adds.
func addressForms(list string) [][2]string {
	local, domain, _ := strings.Cut(list, "@")
	return [][2]string{
		{"extension", local + "+x@" + domain},
		{"quoted", `"` + local + `"@` + domain},
		{"trailing dot", list + "."},
		{"bare local name", local},
		{"source route", "@hop.example.net:" + list},
	}
}

// TestListAddressFormsThroughPostfix: five other forms of a list's address
// in RCPT TO, each of which a real Postfix delivers to all the list's
// members (a virtual alias map, recipient_delimiter +, myorigin
// example.org), count as that list: each reply-all of a thread to
// everyone@ (3,000 members, its own max_replies 5) in one of the forms is
// counted with the list's audience, so that the sixth reply is refused;
// and each form of announce@ (its own posters) is stopped by the list's
// gate.
func TestListAddressFormsThroughPostfix(t *testing.T) {
	sink := smtpenv.StartSink(t)
	yaml := fmt.Sprintf(`log:
  level: debug
store:
  backend: memory
lists:
  %[1]s: 3000
  %[2]s: 3000
list_policy:
  %[1]s:
    max_replies: 5
  %[2]s:
    posters: [comms@example.org]
policy:
  local_domains: [example.org]
`, everyone, announce)
	d := startDaemon(t, yaml)
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: "inet:" + d.addr, Extra: map[string]string{
		"virtual_alias_maps": "inline:{ { " + everyone + " = m1@members.example.net, m2@members.example.net }, { " +
			announce + " = m3@members.example.net, m4@members.example.net } }",
		"recipient_delimiter": "+",
		"myorigin":            "example.org",
	}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.Log())
		}
	})
	n := node{daemon: d, postfix: pf}

	// reachesMembers waits until the message id reached both members m, m+1.
	reachesMembers := func(what, id string, m int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got, err := sink.Wait(ctx, func(s smtpenv.SinkMessage) bool { return s.Header("Message-ID") == "<"+id+">" })
		if err != nil {
			t.Fatalf("%s: accepted but never delivered: %v", what, err)
		}
		// Postfix carries an extension over to the members
		// (propagate_unmatched_extensions): m1+x@ is m1@.
		to := map[string]bool{}
		for _, a := range got.To {
			local, domain, _ := strings.Cut(strings.ToLower(a), "@")
			local, _, _ = strings.Cut(local, "+")
			to[local+"@"+domain] = true
		}
		for _, member := range []string{fmt.Sprintf("m%d@members.example.net", m), fmt.Sprintf("m%d@members.example.net", m+1)} {
			if !to[member] {
				t.Fatalf("%s: delivered to %q, not to the list's member %s: Postfix did not resolve the form to the list", what, got.To, member)
			}
		}
	}

	const root, subject = "forms-root@example.org", "Address forms"
	if r := send(t, n, boss, []string{everyone}, originalMail(root, everyone, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	for i, form := range addressForms(everyone) {
		i++
		sender := fmt.Sprintf("user%d@example.org", i)
		r := send(t, n, sender, []string{form[1]}, replyAllMail(i, root, everyone, subject))
		if !r.OK() {
			t.Fatalf("reply %d to <%s> (%s): %v, want 250", i, form[1], form[0], r)
		}
		line := n.log.wait(t, 0, "msg=decision", "queue_id="+smtpenv.QueuedAs(r))
		got := n.log.line(line)
		t.Logf("reply %d to <%s> (%s): %s", i, form[1], form[0], decisionFields(got))
		if want := fmt.Sprintf("audience=3000 count=%d action=accept rule=counted", i); !strings.Contains(got, want) {
			t.Errorf("reply %d to <%s> (%s): %s; want %s", i, form[1], form[0], got, want)
		}
		reachesMembers(fmt.Sprintf("reply %d to <%s>", i, form[1]), fmt.Sprintf("reply-%d-%s", i, root), 1)
	}
	r := replyAll(t, n, 6, root, everyone, subject)
	if r.Code != 550 || !strings.Contains(r.Text, string(threadOf(root))) {
		t.Errorf("reply 6 to <%s>: %v; want 550 naming thread %s (the list's max_replies 5 taken by the five forms)", everyone, r, threadOf(root))
	} else {
		t.Logf("reply 6 to <%s>: %d %s", everyone, r.Code, r.Text)
	}

	for i, form := range addressForms(announce) {
		const stranger = "stranger@example.net"
		id := fmt.Sprintf("announce-%d@example.net", i)
		r := send(t, n, stranger, []string{form[1]}, gatedMail(id, stranger))
		t.Logf("original from %s to <%s> (%s): %v", stranger, form[1], form[0], r)
		if r.Code != 550 || !strings.Contains(r.Text, announce) {
			t.Errorf("original from %s to <%s> (%s): %v; want 550 naming %s (its posters)", stranger, form[1], form[0], r, announce)
			if r.OK() {
				reachesMembers(fmt.Sprintf("original to <%s>", form[1]), id, 3)
			}
		}
	}
}

// decisionFields is a decision log line from audience= on.
func decisionFields(line string) string {
	if i := strings.Index(line, "audience="); i >= 0 {
		return line[i:]
	}
	return line
}
