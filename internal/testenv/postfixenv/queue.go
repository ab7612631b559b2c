package postfixenv

import (
	"bufio"
	"encoding/json"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
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
func (p *Server) Queue() []QueueEntry {
	p.t.Helper()
	postqueue := testenv.LookPath(p.t, "postqueue", "install the Debian package postfix")
	out, err := p.run(30*time.Second, postqueue, "-c", p.ConfigDir, "-j")
	if err != nil {
		p.t.Fatalf("postfixenv: postqueue -j: %v\n%s", err, out)
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
			p.t.Fatalf("postfixenv: postqueue -j: line %q: %v", sc.Text(), err)
		}
		q = append(q, e)
	}
	return q
}

// Postsuper runs postsuper -c DIR with args (e.g. "-H", ID to release a
// held message) as an operator would.
func (p *Server) Postsuper(args ...string) {
	p.t.Helper()
	postsuper := testenv.LookPath(p.t, "postsuper", "install the Debian package postfix")
	out, err := p.run(30*time.Second, postsuper, append([]string{"-c", p.ConfigDir}, args...)...)
	if err != nil {
		p.t.Fatalf("postfixenv: postsuper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// DeferAll is the Options.Extra that keeps every relayed
// message in the deferred queue, never tried (defer_transports = smtp):
// a destination that is down, for tests of what is queued.
var DeferAll = map[string]string{"defer_transports": "smtp"}

// QueueNames returns the instance's queue (Queue) as queue id to
// queue_name: incoming, active, deferred, hold, ...
func (p *Server) QueueNames() map[string]string {
	p.t.Helper()
	q := map[string]string{}
	for _, e := range p.Queue() {
		q[e.QueueID] = e.QueueName
	}
	return q
}

// WaitQueue polls QueueNames until ok accepts it, for up to 30 s, and
// returns it; it fails the test at the deadline with the last listing.
func (p *Server) WaitQueue(what string, ok func(map[string]string) bool) map[string]string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		q := p.QueueNames()
		if ok(q) {
			return q
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postfixenv: postfix queue: not %s within 30s; last: %v\nlog:\n%s", what, q, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
