package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/stormguard/stormguard/cmd/stormguard/internal/config"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// The notifier and its adapters: events depends on neither milter nor
// store, so this file hands it what they offer.

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

// NewNotifier starts the notifier for cfg: Redis pub/sub (or the log with
// the memory store) plus the webhook if configured; with enrich, storm
// events get their thread's original sender from the store; userAgent
// names this build in webhook POSTs.
func NewNotifier(cfg *config.Config, st store.Store, log *slog.Logger, userAgent string, enrich bool) (*events.Notifier, error) {
	c := cfg.EventsConfig()
	c.UserAgent = userAgent
	return events.NewNotifier(withStore(c, st, enrich), log)
}
