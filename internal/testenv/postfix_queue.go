package testenv

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// PostfixDeferAll is the PostfixOptions.Extra that keeps every relayed
// message in the deferred queue, never tried (defer_transports = smtp):
// a destination that is down, for tests of what is queued.
var PostfixDeferAll = map[string]string{"defer_transports": "smtp"}

// QueueID returns the queue id in Postfix's reply to the end of data
// ("2.0.0 Ok: queued as ID"), or fails the test.
func QueueID(t testing.TB, r Reply) string {
	t.Helper()
	_, id, ok := strings.Cut(r.Text, "queued as ")
	if !r.OK() || !ok || id == "" || strings.ContainsAny(id, " \t") {
		t.Fatalf("testenv: want 250 ... queued as ID, got %v", r)
	}
	return id
}

// QueueNames returns the instance's queue as postqueue -j lists it: queue id
// to queue_name (incoming, active, deferred, hold, ...). It reads the
// listing itself, so tests of code that lists the queue have an
// independent witness.
func (p *Postfix) QueueNames() map[string]string {
	p.t.Helper()
	out, err := p.run(30*time.Second, p.postqueueCmd(), "-c", p.ConfigDir, "-j")
	if err != nil {
		p.t.Fatalf("testenv: postqueue -j: %v\n%s", err, out)
	}
	q := map[string]string{}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var m struct {
			Queue string `json:"queue_name"`
			ID    string `json:"queue_id"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return q
		} else if err != nil {
			p.t.Fatalf("testenv: postqueue -j: %v\n%s", err, out)
		}
		q[m.ID] = m.Queue
	}
}

// WaitQueue polls QueueNames until ok accepts it, for up to 30 s, and returns
// it; it fails the test at the deadline with the last listing.
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

// postqueueCmd finds postqueue.
func (p *Postfix) postqueueCmd() string {
	return LookPath(p.t, "postqueue", "install the Debian package postfix")
}
