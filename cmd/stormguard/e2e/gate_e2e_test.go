package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// gateYAML: the Redis store, all-staff at 850,000 members, the sender gate
// at 5,000 with one poster and one SASL login from the config, and one
// exempt sender; more lines (e.g. "  action: hold\n" under gate) follow.
func gateYAML(redis, gateExtra string) string {
	return fmt.Sprintf(`store:
  backend: redis
  refresh: 100ms
redis:
  addrs: [%s]
  timeout: 500ms
lists:
  %s: 850000
policy:
  exempt_senders: [robot@example.org]
gate:
  min_audience: 5000
  posters: [comms@example.org, jdoe]
%s`, redis, staffList, gateExtra)
}

// startGateNode is startNode with a Postfix that, with logins, has a
// submission service requiring SMTP AUTH of them (the login reaches the
// milter in {auth_authen}); the milter is on both its services.
func startGateNode(t *testing.T, yaml string, sink *smtpenv.Sink, logins map[string]string) node {
	t.Helper()
	d := startDaemon(t, yaml)
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: "inet:" + d.addr, SASL: logins})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.Log())
		}
	})
	return node{daemon: d, postfix: pf}
}

// gatedMail is an original (no In-Reply-To, no References) to the list.
func gatedMail(id, from string) []byte {
	return smtpenv.NewMessage().
		Add("From", "<"+from+">").
		Add("To", "All staff <"+staffList+">").
		Add("Subject", "Announcement "+id).
		Add("Message-ID", "<"+id+">").
		SetBody("To everyone.\n").Bytes()
}

// TestGateThroughPostfix: the sender gate through a real Postfix on the
// Redis backend, a list of 850,000 and gate.min_audience 5000. The first
// message of an unlisted sender (an original, not a reply) is refused with
// 550 5.7.1 naming the list; a poster from the config, one added with
// redis-cli SADD stormguard:posters (within store.refresh) and an exempt
// sender are accepted and delivered; an AUTH'd client whose SASL login is
// a poster is accepted through Postfix's submission service with an
// envelope sender that is not, and the same message without AUTH (port
// 25's service) is refused.
func TestGateThroughPostfix(t *testing.T) {
	redis := redisenv.Start(t)
	sink := smtpenv.StartSink(t)
	n := startGateNode(t, gateYAML(redis, ""), sink, map[string]string{"jdoe": "jdoe's password", "mallory": "other password"})
	n.log.wait(t, 0, "site settings loaded", "posters=2")

	refused := func(what string, r smtpenv.Reply) {
		t.Helper()
		if r.Stage != "end" || r.Code != 550 || !strings.HasPrefix(r.Text, "5.7.1 ") || !strings.Contains(r.Text, staffList) {
			t.Fatalf("%s: %v, want 550 5.7.1 naming %s after the data", what, r, staffList)
		}
	}
	delivered := func(what, id string, r smtpenv.Reply) {
		t.Helper()
		if !r.OK() {
			t.Fatalf("%s: %v, want 250", what, r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := sink.Wait(ctx, func(m smtpenv.SinkMessage) bool { return m.Header("Message-ID") == "<"+id+">" }); err != nil {
			t.Fatalf("%s: accepted but never delivered: %v", what, err)
		}
	}

	// The unlisted sender's very first message.
	r := send(t, n, "stranger@example.net", []string{staffList}, gatedMail("gate-1@example.net", "stranger@example.net"))
	refused("unlisted sender's original", r)
	t.Logf("refusal seen by the SMTP client: %d %s", r.Code, r.Text)
	n.log.wait(t, 0, "rule=gate", "list="+staffList)

	delivered("config poster", "gate-2@example.org",
		send(t, n, "comms@example.org", []string{staffList}, gatedMail("gate-2@example.org", "comms@example.org")))
	delivered("exempt sender", "gate-3@example.org",
		send(t, n, "robot@example.org", []string{staffList}, gatedMail("gate-3@example.org", "robot@example.org")))

	t.Run("poster added with redis-cli", func(t *testing.T) {
		const who = "newcomer@example.net"
		refused("before SADD", send(t, n, who, []string{staffList}, gatedMail("gate-4@example.net", who)))
		redisenv.CLI(t, redis, "SADD", "stormguard:posters", who)
		// Every node re-reads the set within store.refresh (100ms here):
		// poll with a deadline rather than wait a fixed time.
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; ; i++ {
			id := fmt.Sprintf("gate-5-%d@example.net", i)
			r := send(t, n, who, []string{staffList}, gatedMail(id, who))
			if r.OK() {
				delivered("after SADD", id, r)
				break
			}
			refused("after SADD, not yet re-read", r)
			if time.Now().After(deadline) {
				t.Fatalf("%s still refused 10s after SADD stormguard:posters (store.refresh 100ms)", who)
			}
			time.Sleep(50 * time.Millisecond)
		}
		from := n.log.len()
		redisenv.CLI(t, redis, "SREM", "stormguard:posters", who)
		n.log.wait(t, from, "site settings loaded", "posters=2")
		refused("after SREM", send(t, n, who, []string{staffList}, gatedMail("gate-6@example.net", who)))
	})

	t.Run("SASL login", func(t *testing.T) {
		const from = "jd@home.example.net" // not a poster: the login is
		r, err := smtpenv.SendAuth(n.postfix.SubmissionAddr, "jdoe", "jdoe's password", from, []string{staffList}, gatedMail("gate-7@example.net", from))
		if err != nil {
			t.Fatal(err)
		}
		delivered("AUTH as jdoe", "gate-7@example.net", r)
		n.log.wait(t, 0, "auth=jdoe", "queue_id="+smtpenv.QueuedAs(r))

		r = send(t, n, from, []string{staffList}, gatedMail("gate-8@example.net", from))
		refused("same sender without AUTH", r)

		// Another login that is not a poster does not open the gate.
		r, err = smtpenv.SendAuth(n.postfix.SubmissionAddr, "mallory", "other password", from, []string{staffList}, gatedMail("gate-9@example.net", from))
		if err != nil {
			t.Fatal(err)
		}
		refused("AUTH as mallory", r)
	})

	t.Run("action hold", func(t *testing.T) {
		h := startGateNode(t, gateYAML(redis, "  action: hold\n"), sink, nil)
		r := send(t, h, "stranger@example.net", []string{staffList}, gatedMail("gate-10@example.net", "stranger@example.net"))
		qid := smtpenv.QueuedAs(r)
		if !r.OK() || qid == "" {
			t.Fatalf("unlisted sender with gate.action hold: %v, want 250 queued as ID", r)
		}
		h.log.wait(t, 0, "action=hold", "rule=gate", "queue_id="+qid)
		var held *postfixenv.QueueEntry
		for deadline := time.Now().Add(20 * time.Second); held == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for _, e := range h.postfix.Queue() {
				if e.QueueID == qid && e.QueueName == "hold" {
					held = &e
				}
			}
		}
		if held == nil {
			t.Fatalf("%s is not in the hold queue: %+v", qid, h.postfix.Queue())
		}
		if held.Sender != "stranger@example.net" || len(held.Recipients) != 1 || held.Recipients[0].Address != staffList {
			t.Errorf("held %+v, want stranger@example.net to %s", *held, staffList)
		}
		t.Logf("postqueue -j: %+v", *held)
		// A poster's message on the same node is not held.
		delivered("config poster with action hold", "gate-11@example.org",
			send(t, h, "comms@example.org", []string{staffList}, gatedMail("gate-11@example.org", "comms@example.org")))
	})

	for _, m := range sink.Messages() {
		switch m.Header("Message-ID") {
		case "<gate-1@example.net>", "<gate-4@example.net>", "<gate-6@example.net>", "<gate-8@example.net>", "<gate-9@example.net>", "<gate-10@example.net>":
			t.Errorf("gated %s was delivered", m.Header("Message-ID"))
		}
	}
}
