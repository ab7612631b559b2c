package main

import (
	"context"
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Adapters between packages that must not know each other: events depends
// on neither milter nor store, so this file hands it what they offer.

// withStore returns c with the outlets st offers: Redis pub/sub when st is
// Redis (with the memory store events are logged) and, if enrich, storm
// events completed with their thread's original sender and subject from
// st's thread records.
func withStore(c events.Config, st store.Store, enrich bool) events.Config {
	if r, ok := st.(*store.Redis); ok {
		c.Publish = r.Publish
		// One storm notice per thread for the site: the first node to
		// claim it mails it.
		node := c.Node
		c.Mail.Claim = func(ctx context.Context, t string, ttl time.Duration) (bool, error) {
			return r.ClaimNotice(ctx, policy.ThreadID(t), node, ttl)
		}
		c.Mail.RedisPrefix = r.Keys().Prefix()
	}
	if a, ok := st.(store.Admin); ok && enrich {
		c.Origins = storeOrigins{a}
	}
	return c
}

// storeOrigins answers events.Origins from a store's thread records.
type storeOrigins struct{ st store.Admin }

func (o storeOrigins) Origin(ctx context.Context, t policy.ThreadID) (sender, subject string, err error) {
	info, err := o.st.Thread(ctx, t, time.Now())
	if err != nil {
		return "", "", err
	}
	return info.Sender, info.Subject, nil
}

// refusal is a refused reply as the blocked-thread summary reports it.
func refusal(d milter.Decision, m *milter.Message) events.Refusal {
	return events.Refusal{Thread: d.Thread, Subject: d.Subject, Sender: m.Sender, Action: string(d.Action)}
}
