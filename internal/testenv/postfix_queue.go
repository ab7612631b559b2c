package testenv

import (
	"testing"
	"time"
)

// PostfixDeferAll is the PostfixOptions.Extra that keeps every relayed
// message in the deferred queue, never tried (defer_transports = smtp):
// a destination that is down, for tests of what is queued.
var PostfixDeferAll = map[string]string{"defer_transports": "smtp"}

// QueueID returns the queue id in an MTA's answer to a message (QueuedAs),
// or fails the test.
func QueueID(t testing.TB, r Reply) string {
	t.Helper()
	id := QueuedAs(r)
	if !r.OK() || id == "" {
		t.Fatalf("testenv: want 250 naming a queue id, got %v", r)
	}
	return id
}

// QueueNames returns the instance's queue (Queue) as queue id to
// queue_name: incoming, active, deferred, hold, ...
func (p *Postfix) QueueNames() map[string]string {
	p.t.Helper()
	q := map[string]string{}
	for _, e := range p.Queue() {
		q[e.QueueID] = e.QueueName
	}
	return q
}

// WaitQueue polls QueueNames until ok accepts it, for up to 30 s, and
// returns it; it fails the test at the deadline with the last listing.
func (p *Postfix) WaitQueue(what string, ok func(map[string]string) bool) map[string]string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		q := p.QueueNames()
		if ok(q) {
			return q
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("testenv: postfix queue: not %s within 30s; last: %v\nlog:\n%s", what, q, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
