package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// recorder is a Publish that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) notifier(t *testing.T, o Origins) *Notifier {
	t.Helper()
	n, err := NewNotifier(Config{Queue: 100, PublishTimeout: time.Second, Origins: o,
		Publish: func(_ context.Context, msg string) error {
			var e Event
			if err := json.Unmarshal([]byte(msg), &e); err != nil {
				return err
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, e)
			return nil
		}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func closeNotifier(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !n.Close(ctx) {
		t.Fatal("Close did not deliver everything")
	}
}

// fakeOrigins answers Origin from a map; a thread not in it is an error.
type fakeOrigins struct {
	mu      sync.Mutex
	threads map[policy.ThreadID][2]string
	asked   []policy.ThreadID
}

func (f *fakeOrigins) Origin(ctx context.Context, t policy.ThreadID) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, t)
	if _, ok := ctx.Deadline(); !ok {
		return "", "", errors.New("no deadline")
	}
	o, ok := f.threads[t]
	if !ok {
		return "", "", errors.New("no such thread")
	}
	return o[0], o[1], nil
}

// TestStormsGetTheirOrigin: a storm decided on the shared store is
// completed with its thread's original sender and subject; fallback storms,
// other events and failed lookups are sent as they are.
func TestStormsGetTheirOrigin(t *testing.T) {
	o := &fakeOrigins{threads: map[policy.ThreadID][2]string{"00000000000000a1": {"boss@example.org", "Lunch"}}}
	var r recorder
	n := r.notifier(t, o)
	n.Emit(Event{Type: TypeStorm, Thread: "00000000000000a1", Subject: "RE: lunch"})
	n.Emit(Event{Type: TypeStorm, Thread: "00000000000000a1", Subject: "RE: lunch", Fallback: true})
	n.Emit(Event{Type: TypeStorm, Thread: "00000000000000b2", Subject: "RE: other"})
	n.Emit(Event{Type: TypeOverride, Thread: "00000000000000a1", Override: "allow", By: "op"})
	closeNotifier(t, n)

	if len(r.events) != 4 {
		t.Fatalf("%d events published, want 4", len(r.events))
	}
	if e := r.events[0]; e.OriginalSender != "boss@example.org" || e.Subject != "Lunch" {
		t.Errorf("storm: original sender %q, subject %q; want the thread's", e.OriginalSender, e.Subject)
	}
	for _, e := range r.events[1:] {
		if e.OriginalSender != "" {
			t.Errorf("%s event (fallback %v) got original sender %q", e.Type, e.Fallback, e.OriginalSender)
		}
	}
	if r.events[2].Subject != "RE: other" {
		t.Errorf("failed lookup changed the subject to %q", r.events[2].Subject)
	}
	if len(o.asked) != 2 {
		t.Errorf("looked up %v, want only the two storms on the shared store", o.asked)
	}
}

// TestSummarizer: refusals in a thread come out as one summary per thread
// with the count and the last refusal's details.
func TestSummarizer(t *testing.T) {
	var r recorder
	n := r.notifier(t, nil)
	s := NewSummarizer()
	s.Add(Refusal{Thread: "00000000000000a1", Subject: "RE: lunch", Sender: "ann@example.org", Action: "reject"})
	s.Add(Refusal{Thread: "00000000000000a1", Subject: "RE: lunch", Sender: "bob@example.org", Action: "reject"})
	s.Add(Refusal{Thread: "00000000000000b2", Subject: "RE: other", Sender: "cat@example.org", Action: "tag"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run flushes once more when ctx ends
	s.Run(ctx, n, time.Hour)
	s.Run(ctx, n, time.Hour) // nothing new: no events
	closeNotifier(t, n)

	got := map[string]Event{}
	for _, e := range r.events {
		got[e.Thread] = e
	}
	if len(r.events) != 2 {
		t.Fatalf("%d summaries, want 2: %+v", len(r.events), r.events)
	}
	if e := got["00000000000000a1"]; e.Type != TypeBlocked || e.Refused != 2 || e.Sender != "bob@example.org" ||
		e.Action != "reject" || e.Period != "1h0m0s" {
		t.Errorf("summary a1 = %+v", e)
	}
	if e := got["00000000000000b2"]; e.Refused != 1 || e.Action != "tag" || e.Subject != "RE: other" {
		t.Errorf("summary b2 = %+v", e)
	}
}
