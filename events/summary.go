package events

import (
	"context"
	"sync"
	"time"

	"github.com/stormguard/stormguard/milter"
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

// NewSummarizer returns an empty summarizer.
func NewSummarizer() *Summarizer {
	return &Summarizer{threads: map[policy.ThreadID]*summary{}}
}

// Add notes one refused reply.
func (s *Summarizer) Add(d milter.Decision, m *milter.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.threads[d.Thread]
	if x == nil {
		x = &summary{}
		s.threads[d.Thread] = x
	}
	x.refused++
	x.subject, x.sender, x.action = d.Subject, m.Sender, string(d.Action)
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
