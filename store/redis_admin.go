package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// The Redis store's Admin methods write the same keys operators write with
// redis-cli (store/keys.go lists them).

// SetOverride implements Admin.
func (s *Redis) SetOverride(ctx context.Context, t policy.ThreadID, o policy.Override, ttl time.Duration) error {
	err := checkID("thread", string(t))
	if err == nil {
		err = checkOverride(o)
	}
	if err == nil && ttl < 0 {
		err = fmt.Errorf("%w: ttl %v", ErrInvalid, ttl)
	}
	if err == nil {
		err = s.setOverride(ctx, t, o, ttl)
	}
	if err != nil {
		return fmt.Errorf("store: override thread %s: %w", t, err)
	}
	return nil
}

func (s *Redis) setOverride(ctx context.Context, t policy.ThreadID, o policy.Override, ttl time.Duration) error {
	key, now := s.keys.Override(t), time.Now()
	if o == policy.OverrideNone {
		if err := s.client.Del(ctx, key).Err(); err != nil {
			return err
		}
		blocked, err := s.blockUntil(ctx, t, now) // the storm's block, if any, counts again
		if err != nil {
			return err
		}
		pipe := s.client.Pipeline()
		s.queueBlocked(ctx, pipe, t, blocked)
		_, err = pipe.Exec(ctx)
		return err
	}
	if err := s.client.Set(ctx, key, string(o), ttl).Err(); err != nil {
		return err
	}
	// Listed by storms while the override lasts (store/list.go); counted
	// as blocked while a block override or the storm's block holds it.
	var until, blocked int64
	if ttl > 0 {
		until = now.Add(ttl).UnixMilli()
	}
	if o == policy.OverrideBlock {
		blocked = noExpiry
		if until > 0 {
			b, err := s.blockUntil(ctx, t, now)
			if err != nil {
				return err
			}
			blocked = max(until, b)
		}
	}
	return s.indexStorm(ctx, t, now, until, blocked)
}

// blockUntil is until when (ms) thread t's block key holds it, noExpiry
// without a TTL, 0 when it has none.
func (s *Redis) blockUntil(ctx context.Context, t policy.ThreadID, now time.Time) (int64, error) {
	ttl, err := s.client.PTTL(ctx, s.keys.Block(t)).Result()
	switch {
	case err != nil:
		return 0, err
	case ttl == -1:
		return noExpiry, nil
	case ttl > 0:
		return now.Add(ttl).UnixMilli(), nil
	}
	return 0, nil
}

// Reset implements Admin, in one MULTI on the thread's slot.
func (s *Redis) Reset(ctx context.Context, t policy.ThreadID) error {
	if err := checkID("thread", string(t)); err != nil {
		return fmt.Errorf("store: reset thread %s: %w", t, err)
	}
	k := s.keys.Thread(t)
	var exists *redis.IntCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, k[keyReplies], k[keyMeta], k[keyBlock], k[keyOverride], k[keySenders])
		p.Del(ctx, k[keyReplies], k[keyBlock], k[keyOverride], k[keySenders])
		p.HDel(ctx, k[keyMeta], "accepted", "refused", "allowed", "storm_at", "storm_rule", "senders")
		return nil
	})
	if err == nil && exists.Val() == 0 {
		err = ErrNotFound
	}
	if err == nil { // the blocked index lives in a slot of its own
		pipe := s.client.Pipeline()
		s.queueBlocked(ctx, pipe, t, 0)
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		return fmt.Errorf("store: reset thread %s: %w", t, err)
	}
	return nil
}

// SetList implements Admin.
func (s *Redis) SetList(ctx context.Context, addr string, members int) error {
	a, err := normAddr("list address", addr)
	if err == nil {
		if members <= 0 {
			err = s.client.HDel(ctx, s.keys.Lists(), a).Err()
		} else {
			err = s.client.HSet(ctx, s.keys.Lists(), a, strconv.Itoa(members)).Err()
		}
	}
	if err != nil {
		return fmt.Errorf("store: set list %s: %w", addr, err)
	}
	return nil
}

// SetListPolicy implements Admin: the field is the list's address, the
// value p as a JSON object (policy.ListPolicy.String), as an operator may
// write it with redis-cli; the zero policy removes the field.
func (s *Redis) SetListPolicy(ctx context.Context, addr string, p policy.ListPolicy) error {
	a, err := normAddr("list address", addr)
	var q policy.ListPolicy
	var text string
	if err == nil {
		q, text, err = normListPolicy(p)
	}
	if err == nil {
		if q.IsZero() {
			err = s.client.HDel(ctx, s.keys.ListPolicy(), a).Err()
		} else {
			err = s.client.HSet(ctx, s.keys.ListPolicy(), a, text).Err()
		}
	}
	if err != nil {
		return fmt.Errorf("store: set list policy %s: %w", addr, err)
	}
	return nil
}

// SetMode implements Admin.
func (s *Redis) SetMode(ctx context.Context, m policy.Mode) error {
	err := checkMode(m)
	if err == nil {
		if m == "" {
			err = s.client.Del(ctx, s.keys.Mode()).Err()
		} else {
			err = s.client.Set(ctx, s.keys.Mode(), string(m), 0).Err()
		}
	}
	if err != nil {
		return fmt.Errorf("store: set mode: %w", err)
	}
	return nil
}

// AddExempt implements Admin.
func (s *Redis) AddExempt(ctx context.Context, sender string) error {
	a, err := normAddr("exempt sender", sender)
	if err == nil {
		err = s.client.SAdd(ctx, s.keys.Exempt(), a).Err()
	}
	if err != nil {
		return fmt.Errorf("store: add exempt %s: %w", sender, err)
	}
	return nil
}

// AddPoster implements Admin.
func (s *Redis) AddPoster(ctx context.Context, poster string) error {
	a, err := normAddr("poster", poster)
	if err == nil {
		err = s.client.SAdd(ctx, s.keys.Posters(), a).Err()
	}
	if err != nil {
		return fmt.Errorf("store: add poster %s: %w", poster, err)
	}
	return nil
}

// RemovePoster implements Admin.
func (s *Redis) RemovePoster(ctx context.Context, poster string) (bool, error) {
	a, err := normAddr("poster", poster)
	var n int64
	if err == nil {
		n, err = s.client.SRem(ctx, s.keys.Posters(), a).Result()
	}
	if err != nil {
		return false, fmt.Errorf("store: remove poster %s: %w", poster, err)
	}
	return n > 0, nil
}

// Thread implements Admin: one pipeline over the thread's keys. TTLs are
// Redis' own; now places the window.
func (s *Redis) Thread(ctx context.Context, t policy.ThreadID, now time.Time) (ThreadInfo, error) {
	info, err := s.thread(ctx, t, now)
	if err != nil {
		return ThreadInfo{}, fmt.Errorf("store: thread %s: %w", t, err)
	}
	return info, nil
}

func (s *Redis) thread(ctx context.Context, t policy.ThreadID, now time.Time) (ThreadInfo, error) {
	if err := checkID("thread", string(t)); err != nil {
		return ThreadInfo{}, err
	}
	pipe := s.client.Pipeline()
	c := s.queueThread(ctx, pipe, t, true)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return ThreadInfo{}, err
	}
	return c.info(t, now)
}
