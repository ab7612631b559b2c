package store

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// How the Redis store writes a message's links.
//
// Two rules, both from policy: a link is written only if none
// exists (first writer wins: SET NX), so no later message, a forged one
// included, moves an identity to another thread; and only for a message
// the store let through (policy.MayLink), so that a refused message
// leaves no way into the thread it was refused in.
//
// The second rule cannot be checked before the writes if a record is to
// stay one round trip: record.lua decides in the thread's slot, and on a
// Cluster the links live in other slots, so the links go in the same
// pipeline as the script. A node therefore guesses: it writes
// them, unless it saw the thread refuse within the last refusingTTL
// (Redis.refusing). When the guess was wrong it corrects in a second
// round trip: a refused message deletes the keys it created (never one
// that existed before it: those it did not write), an admitted one it did
// not write for writes them. So a refused message's links exist for one
// round trip at most, and only for the first refusal a node sees in a
// thread; refusals after it cost one round trip and write nothing.

// refusingTTL bounds how long a node trusts that a thread refuses (an
// operator may allow or reset it meanwhile: the guess is then corrected
// by one more round trip), and refusingMax how many threads it keeps.
const (
	refusingTTL = time.Minute
	refusingMax = 4096
)

// refusing remembers the threads this node saw refuse a message lately.
type refusing struct {
	mu sync.Mutex
	m  map[policy.ThreadID]time.Time // thread -> trusted until
}

func (c *refusing) has(t policy.ThreadID, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.m[t]
	return ok && now.Before(until)
}

// note records what a tally says of thread t: refusing (until its block
// ends, at most refusingTTL) or not.
func (c *refusing) note(t policy.ThreadID, tally policy.Tally, k policy.Kind, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if policy.MayLink(k, tally) || k == policy.KindAutoReply {
		delete(c.m, t)
		return
	}
	ttl := refusingTTL
	if tally.BlockTTL > 0 {
		ttl = min(ttl, tally.BlockTTL)
	}
	if c.m == nil || len(c.m) >= refusingMax {
		c.m = make(map[policy.ThreadID]time.Time) // start afresh: a guess only
	}
	c.m[t] = now.Add(ttl)
}

// linkWrite is one queued link write.
type linkWrite struct {
	key string
	nx  *redis.BoolCmd // SET NX: create only
}

// wrote reports whether the write created its key.
func (w linkWrite) wrote() bool { return w.nx.Err() == nil && w.nx.Val() }

// answered reports whether every write of ws got an answer.
func answered(ws []linkWrite) bool {
	for _, w := range ws {
		if w.nx.Err() != nil {
			return false
		}
	}
	return true
}

// linkKeys are the keys of r's links.
func (s *Redis) linkKeys(r Record) []string {
	keys := make([]string, 0, len(r.Links))
	for _, k := range r.Links {
		keys = append(keys, s.keys.Link(k))
	}
	return keys
}

// queueCreate queues SET NX of keys to r.Thread.
func (s *Redis) queueCreate(ctx context.Context, pipe redis.Pipeliner, r Record, keys []string) []linkWrite {
	out := make([]linkWrite, len(keys))
	for i, k := range keys {
		out[i] = linkWrite{key: k, nx: pipe.SetNX(ctx, k, string(r.Thread), r.Retention)}
	}
	return out
}

// written are the keys of ws that were created.
func written(ws []linkWrite) []string {
	var out []string
	for _, w := range ws {
		if w.wrote() {
			out = append(out, w.key)
		}
	}
	return out
}

// fixLinks is the correction round after a wrong guess (see above): with
// a refused message, delete the keys it created; with an admitted one
// whose links were not written, write them. It has a deadline of its own
// (ctx may be what ran out).
func (s *Redis) fixLinks(ctx context.Context, r Record, admitted, tried bool, created []string) error {
	if admitted == tried && (admitted || len(created) == 0) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultTimeout)
	defer cancel()
	pipe := s.client.Pipeline()
	if admitted {
		s.queueCreate(ctx, pipe, r, s.linkKeys(r))
	} else {
		for _, k := range created {
			pipe.Del(ctx, k)
		}
	}
	if pipe.Len() == 0 {
		return nil
	}
	_, err := pipe.Exec(ctx)
	return err
}

// dropLinks deletes the keys a message created when its record failed
// after they were written (its verdict is not the store's to give).
func (s *Redis) dropLinks(ctx context.Context, created []string) error {
	if len(created) == 0 {
		return nil
	}
	return s.fixLinks(ctx, Record{}, false, true, created)
}
