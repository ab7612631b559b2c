package daemon

import (
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
)

// observer is the daemon's milter.Observer: metrics and events. Its
// methods only count and queue; they never block the message.
type observer struct {
	m   *metrics
	n   *events.Notifier
	sum *events.Summarizer
	rec *history.Recorder // nil: nothing is recorded
}

var _ milter.Observer = (*observer)(nil)

func (o *observer) Decided(d milter.Decision, m *milter.Message) {
	o.m.decisions.WithLabelValues(string(d.Action), string(d.Rule)).Inc()
	if o.rec != nil && d.Stored {
		o.rec.Note(history.Note{Thread: d.Thread, Rule: d.Rule, Action: d.Action, Kind: d.Kind, QueueID: m.QueueID,
			Sender: m.Sender, Subject: d.Subject, Lists: d.Lists, Audience: d.Audience, Count: d.Count,
			Delivered: d.Delivered, Limits: d.Limits, Time: time.Now()})
	}
	switch {
	case policy.IsLimit(d.Rule):
		o.m.storms.Inc()
		o.n.Emit(events.Event{Type: events.TypeStorm, Thread: string(d.Thread), Subject: d.Subject, Sender: m.Sender,
			Rule: string(d.Rule), Action: string(d.Action), Audience: d.Audience, Count: d.Count,
			Delivered: d.Delivered, BlockFor: d.BlockFor().String(), Fallback: d.Fallback})
	case d.Rule == policy.RuleGate && d.Action == policy.ActionHold:
		o.n.Emit(events.Event{Type: events.TypeGateHold, Subject: d.Subject, Sender: m.Sender, List: d.List,
			Audience: d.Audience, QueueID: m.QueueID, Action: string(d.Action)})
	case d.Rule == policy.RuleBlocked || d.Rule == policy.RuleOverrideBlock:
		if d.Thread != "" {
			o.sum.Add(refusal(d, m))
		}
	}
}

func (o *observer) StoreCall(op string, took time.Duration, err error) {
	o.m.storeDur.WithLabelValues(op).Observe(took.Seconds())
	if err != nil {
		o.m.storeErrs.WithLabelValues(op).Inc()
	}
}

// refusal is a refused reply as the blocked-thread summary reports it.
func refusal(d milter.Decision, m *milter.Message) events.Refusal {
	return events.Refusal{Thread: d.Thread, Subject: d.Subject, Sender: m.Sender, Action: string(d.Action)}
}
