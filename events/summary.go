package events

import (
	"context"
	"sync"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// Summarizer counts refused replies per thread and emits one
// blocked_summary event per thread every period, so that a blocked thread
// does not flood the channel with one event per refusal.
type Summarizer struct {
	mu      sync.Mutex
	threads map[policy.ThreadID]*summary
}

type summary struct {
	refused int
	subject string
	sender  string
	action  string
}

// Refusal is one reply refused in a blocked thread, as a summary reports
// it.
type Refusal struct {
	Thread  policy.ThreadID
	Subject string // as written, one line
	Sender  string // the envelope sender
	Action  string // what it got: reject, tempfail or tag
}

// NewSummarizer returns an empty summarizer.
func NewSummarizer() *Summarizer {
	return &Summarizer{threads: map[policy.ThreadID]*summary{}}
}

// Add notes one refused reply.
func (s *Summarizer) Add(r Refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.threads[r.Thread]
	if x == nil {
		x = &summary{}
		s.threads[r.Thread] = x
	}
	x.refused++
	x.subject, x.sender, x.action = r.Subject, r.Sender, r.Action
}

// flush emits the summaries gathered since the last flush.
func (s *Summarizer) flush(n *Notifier, period time.Duration) {
	s.mu.Lock()
	threads := s.threads
	s.threads = map[policy.ThreadID]*summary{}
	s.mu.Unlock()
	for t, x := range threads {
		n.Emit(Event{Type: TypeBlocked, Thread: string(t), Subject: x.subject, Sender: x.sender,
			Action: x.action, Refused: x.refused, Period: period.String()})
	}
}

// Run emits the summaries to n every period until ctx ends, then once
// more.
func (s *Summarizer) Run(ctx context.Context, n *Notifier, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.flush(n, period)
		case <-ctx.Done():
			s.flush(n, period)
			return
		}
	}
}
