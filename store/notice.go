package store

import (
	"context"
	"fmt"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// ClaimNotice claims, for ttl, the right to mail thread t's storm notice
// (SET NX PX on Keys.Notified): true for the one node of the site that
// gets it, false while another holds it. node is stored for operators.
func (s *Redis) ClaimNotice(ctx context.Context, t policy.ThreadID, node string, ttl time.Duration) (bool, error) {
	ok, err := s.client.SetNX(ctx, s.keys.Notified(t), node, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("store: claim notice of %s: %w", t, err)
	}
	return ok, nil
}
