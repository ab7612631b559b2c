package history

import (
	"time"

	"github.com/stormguard/stormguard/policy"
)

// The JSON the Redis store writes: Entry's and QueueRef's fields
// under the same names, but times as Unix milliseconds (0: none), which
// are smaller than RFC 3339 text and decode several times faster; History
// decodes a thousand entries of a hundred times each.
type wireEntry struct {
	Thread     policy.ThreadID   `json:"thread"`
	Subject    string            `json:"subject"`
	Sender     string            `json:"original_sender"`
	Lists      []string          `json:"lists,omitempty"`
	Audience   int               `json:"audience"`
	FirstSeen  int64             `json:"first_seen"`
	LastSeen   int64             `json:"last_seen"`
	StormAt    int64             `json:"storm_at,omitempty"`
	StormRule  string            `json:"storm_rule,omitempty"`
	NearMissAt int64             `json:"near_miss_at,omitempty"`
	Accepted   int               `json:"accepted"`
	Refused    int               `json:"refused"`
	Allowed    int               `json:"allowed"`
	Senders    map[string]string `json:"senders,omitempty"`
	Queued     []wireRef         `json:"queued,omitempty"`
}

// wireDetail is an entry's bulk, the hash's "detail" field.
type wireDetail struct {
	Senders map[string]string `json:"senders,omitempty"`
	Queued  []wireRef         `json:"queued,omitempty"`
}

type wireRef struct {
	Node   string `json:"node"`
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Sender string `json:"sender"`
	Status string `json:"status"`
	Time   int64  `json:"time"`
}

func toMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func toWireRef(r QueueRef) wireRef {
	return wireRef{Node: r.Node, ID: r.ID, Kind: r.Kind, Sender: r.Sender, Status: r.Status, Time: toMs(r.Time)}
}

func (w wireRef) ref() QueueRef {
	return QueueRef{Node: w.Node, ID: w.ID, Kind: w.Kind, Sender: w.Sender, Status: w.Status, Time: fromMs(w.Time)}
}

func toWire(e Entry) wireEntry {
	w := wireEntry{
		Thread: e.Thread, Subject: e.Subject, Sender: e.Sender, Lists: e.Lists, Audience: e.Audience,
		FirstSeen: toMs(e.FirstSeen), LastSeen: toMs(e.LastSeen), StormAt: toMs(e.StormAt), StormRule: e.StormRule,
		NearMissAt: toMs(e.NearMissAt), Accepted: e.Accepted, Refused: e.Refused, Allowed: e.Allowed, Senders: e.Senders,
	}
	if e.Queued != nil {
		w.Queued = make([]wireRef, len(e.Queued))
		for i, r := range e.Queued {
			w.Queued[i] = toWireRef(r)
		}
	}
	return w
}

func (w wireEntry) entry() Entry {
	e := Entry{
		Thread: w.Thread, Subject: w.Subject, Sender: w.Sender, Lists: w.Lists, Audience: w.Audience,
		FirstSeen: fromMs(w.FirstSeen), LastSeen: fromMs(w.LastSeen), StormAt: fromMs(w.StormAt), StormRule: w.StormRule,
		NearMissAt: fromMs(w.NearMissAt), Accepted: w.Accepted, Refused: w.Refused, Allowed: w.Allowed, Senders: w.Senders,
	}
	if w.Queued != nil {
		e.Queued = make([]QueueRef, len(w.Queued))
		for i, r := range w.Queued {
			e.Queued[i] = r.ref()
		}
	}
	return e
}
