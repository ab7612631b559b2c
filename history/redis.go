package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Redis is the history of all nodes of a site, on the store's Redis
// (the client store.Redis uses) under the store's key names (store.Keys),
// in three kinds of key:
//
//   - stormguard:{T}:queued: a list of JSON QueueRefs (wireRef) in the
//     thread's slot, appended and trimmed to the first MaxQueueRefs in one
//     MULTI, expiring at retention after the last append.
//   - stormguard:{T}:history: the thread's entry, a hash of two JSON
//     fields: "summary" (wireEntry without senders and queue ids, ~0.5 KB)
//     and "detail" (wireDetail: the senders and queue ids, the bulk of a
//     storm's 16 KB), expiring at LastSeen + keep (PEXPIREAT). A listing
//     reads only the summaries, so a thousand storms are half a megabyte,
//     not sixteen; Get reads both.
//   - stormguard:history: the index, thread -> LastSeen (ms), trimmed to
//     keep and to max on every save, in one MULTI on that key alone.
//
// No MULTI spans two slots: the entry and the index are written in two
// transactions, one per slot, and the entries the index drops are deleted
// after, in a pipeline the Cluster client routes. A value that is not what
// stormguard writes (an operator's mistake with redis-cli, or hostile
// data) is skipped when a listing reads it and noted (Problems); Get fails
// with ErrData.
type Redis struct {
	client   redis.UniversalClient
	keys     store.Keys
	problems problems // bad values read
}

var _ Store = (*Redis)(nil)

// NewRedis returns the history kept on client under keys' names: the
// store's client and keys (store.Redis's Client and Keys), so that both
// share one connection pool and one prefix. It does not close client.
func NewRedis(client redis.UniversalClient, keys store.Keys) *Redis {
	return &Redis{client: client, keys: keys}
}

// maxProblems is how many bad values Problems describes one by one.
const maxProblems = 20

// problems keeps the last maxProblems bad values read, and counts all of
// them.
type problems struct {
	mu     sync.Mutex
	recent []store.Problem
	total  uint64
}

func (p *problems) add(key, field, value, why string) {
	if r := []rune(value); len(r) > 64 {
		value = string(r[:63]) + "…"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total++
	if len(p.recent) == maxProblems {
		p.recent = append(p.recent[:0], p.recent[1:]...)
	}
	p.recent = append(p.recent, store.Problem{Key: key, Field: field, Value: value, Why: why})
}

// Problems reports the history values found unusable since s was made:
// the last few, and how many in all. Each was skipped.
func (s *Redis) Problems() (recent []store.Problem, total uint64) {
	p := &s.problems
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]store.Problem(nil), p.recent...), p.total
}

// AddQueued implements Store: RPUSH, LTRIM to the first MaxQueueRefs and
// PEXPIRE in one MULTI on the thread's slot.
func (s *Redis) AddQueued(ctx context.Context, t policy.ThreadID, refs []QueueRef, retention time.Duration) error {
	if err := checkQueued(t, retention); err != nil {
		return fmt.Errorf("history: add queue ids of thread %s: %w", t, err)
	}
	if len(refs) == 0 {
		return nil
	}
	vals := make([]any, 0, min(len(refs), MaxQueueRefs))
	for _, r := range cleanRefs(refs, MaxQueueRefs) {
		b, err := json.Marshal(toWireRef(r))
		if err != nil {
			return fmt.Errorf("history: add queue ids of thread %s: %w", t, err)
		}
		vals = append(vals, b)
	}
	key := s.keys.Queued(t)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, vals...)
		p.LTrim(ctx, key, 0, MaxQueueRefs-1)
		p.PExpire(ctx, key, retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("history: add queue ids of thread %s: %s: %w", t, key, err)
	}
	return nil
}

// Queued implements Store. Values that are not JSON QueueRefs are
// skipped and noted.
func (s *Redis) Queued(ctx context.Context, t policy.ThreadID) ([]QueueRef, error) {
	if err := checkGet(ctx, t); err != nil {
		return nil, fmt.Errorf("history: queue ids of thread %s: %w", t, err)
	}
	key := s.keys.Queued(t)
	raw, err := s.client.LRange(ctx, key, 0, MaxQueueRefs-1).Result()
	if err != nil {
		if store.IsDataError(err) {
			return nil, fmt.Errorf("%w: queue ids of thread %s: %s: %w", ErrData, t, key, err)
		}
		return nil, fmt.Errorf("history: queue ids of thread %s: %s: %w", t, key, err)
	}
	var out []QueueRef
	for i, v := range raw {
		var r wireRef
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			s.problems.add(key, strconv.Itoa(i), v, "not a JSON queue id: skipped")
			continue
		}
		out = append(out, cleanRef(r.ref()))
	}
	return out, nil
}

// Save implements Store: the entry (SET, PEXPIREAT) in one MULTI
// on the thread's slot; then, in one MULTI on the index, ZADD, the
// entries older than keep and those beyond max read and removed; then the
// removed ones' entries deleted.
func (s *Redis) Save(ctx context.Context, e Entry, keep time.Duration, max int) error {
	if err := checkEntry(e, keep); err != nil {
		return fmt.Errorf("history: save entry of thread %s: %w", e.Thread, err)
	}
	e = cleanEntry(e)
	w := toWire(e)
	detail, err := json.Marshal(wireDetail{Senders: w.Senders, Queued: w.Queued})
	if err != nil {
		return fmt.Errorf("history: save entry of thread %s: %w", e.Thread, err)
	}
	w.Senders, w.Queued = nil, nil
	summary, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("history: save entry of thread %s: %w", e.Thread, err)
	}
	key := s.keys.HistoryEntry(e.Thread)
	if _, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key) // whatever was there, even of another type
		p.HSet(ctx, key, fieldSummary, summary, fieldDetail, detail)
		p.PExpireAt(ctx, key, e.LastSeen.Add(keep)) // in the past: deleted at once
		return nil
	}); err != nil {
		return fmt.Errorf("history: save entry of thread %s: %s: %w", e.Thread, key, err)
	}

	idx := s.keys.History()
	cutoff := "(" + strconv.FormatInt(time.Now().Add(-keep).UnixMilli(), 10)
	var old, over *redis.StringSliceCmd
	if _, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, idx, redis.Z{Score: float64(e.LastSeen.UnixMilli()), Member: string(e.Thread)})
		old = p.ZRangeArgs(ctx, redis.ZRangeArgs{Key: idx, Start: "-inf", Stop: cutoff, ByScore: true})
		p.ZRemRangeByScore(ctx, idx, "-inf", cutoff)
		if max > 0 {
			// All but the max highest: the oldest, lowest id first.
			over = p.ZRange(ctx, idx, 0, -int64(max)-1)
			p.ZRemRangeByRank(ctx, idx, 0, -int64(max)-1)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("history: save entry of thread %s: %s: %w", e.Thread, idx, err)
	}
	dropped := old.Val()
	if over != nil {
		dropped = append(dropped, over.Val()...)
	}
	if err := s.dropEntries(ctx, dropped); err != nil {
		return fmt.Errorf("history: save entry of thread %s: %w", e.Thread, err)
	}
	return nil
}

// dropEntries deletes the entries of threads the index no longer lists,
// one DEL each (each in its own slot), in one pipeline. A thread saved
// again by another node between the index's MULTI and this DEL loses its
// new entry too (the index then finds it gone and drops it): only at the
// max, only for the oldest entry, and its next save restores it.
func (s *Redis) dropEntries(ctx context.Context, threads []string) error {
	pipe := s.client.Pipeline()
	for _, t := range threads {
		if checkThread(policy.ThreadID(t)) == nil { // anything else has no entry key of ours
			pipe.Del(ctx, s.keys.HistoryEntry(policy.ThreadID(t)))
		}
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("drop history entries: %w", err)
	}
	return nil
}

// List implements Store: the index read most recent first, then
// the entries' summaries in one pipeline of HGETs, page by page until limit entries
// are found or the index ends. Entries gone (expired, or deleted by an
// operator) are skipped and taken out of the index; values that are not
// entries are skipped and noted.
func (s *Redis) List(ctx context.Context, since time.Time, limit int) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("history: list: %w", err)
	}
	limit = listLimit(limit)
	from := since.UnixMilli() // to the millisecond, as entries are kept
	idx := s.keys.History()
	var out []Entry
	var gone []any
	for offset := int64(0); len(out) < limit; {
		want := limit - len(out)
		ids, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: idx, Start: "+inf", Stop: strconv.FormatInt(from, 10), ByScore: true, Rev: true,
			Offset: offset, Count: int64(want),
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("history: list: %s: %w", idx, err)
		}
		offset += int64(len(ids))
		pipe := s.client.Pipeline()
		var threads []policy.ThreadID
		var gets []*redis.StringCmd
		for _, id := range ids {
			if checkThread(policy.ThreadID(id)) != nil {
				s.problems.add(idx, "", id, "not a thread id: skipped")
				continue
			}
			threads = append(threads, policy.ThreadID(id))
			gets = append(gets, pipe.HGet(ctx, s.keys.HistoryEntry(policy.ThreadID(id)), fieldSummary))
		}
		if len(gets) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !store.IsDataError(err) {
				return nil, fmt.Errorf("history: list: %w", err)
			}
		}
		entries, errs := s.readEntries(threads, gets)
		for i, e := range entries {
			switch err := errs[i]; {
			case errors.Is(err, ErrNotFound):
				gone = append(gone, string(threads[i]))
			case errors.Is(err, ErrData):
				// noted by readEntry; the rest of the history stands
			case err != nil:
				return nil, fmt.Errorf("history: list: %w", err)
			case e.LastSeen.UnixMilli() >= from:
				out = append(out, e)
			}
		}
		if len(ids) < want {
			break
		}
	}
	if len(gone) > 0 {
		_ = s.client.ZRem(ctx, idx, gone...).Err() // tidying only: the next save trims by time anyway
	}
	return out, nil
}

// readEntries is readEntry of each summary's HGET, on up to GOMAXPROCS
// goroutines: JSON decoding is most of List's time.
func (s *Redis) readEntries(threads []policy.ThreadID, gets []*redis.StringCmd) ([]Entry, []error) {
	entries, errs := make([]Entry, len(gets)), make([]error, len(gets))
	workers := min(runtime.GOMAXPROCS(0), len(gets)/16+1) // a few entries are not worth a goroutine
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(gets); i += workers {
				entries[i], errs[i] = s.readEntry(threads[i], gets[i], nil)
			}
		})
	}
	wg.Wait()
	return entries, errs
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, t policy.ThreadID) (Entry, error) {
	if err := checkGet(ctx, t); err != nil {
		return Entry{}, fmt.Errorf("history: entry of thread %s: %w", t, err)
	}
	key := s.keys.HistoryEntry(t)
	pipe := s.client.Pipeline()
	sum, detail := pipe.HGet(ctx, key, fieldSummary), pipe.HGet(ctx, key, fieldDetail)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !store.IsDataError(err) {
		return Entry{}, fmt.Errorf("history: entry of thread %s: %s: %w", t, key, err)
	}
	e, err := s.readEntry(t, sum, detail)
	if err != nil {
		return Entry{}, fmt.Errorf("history: entry of thread %s: %w", t, err)
	}
	return e, nil
}

// The fields of an entry's hash.
const (
	fieldSummary = "summary"
	fieldDetail  = "detail"
)

// readEntry reads the replies of the HGETs of t's summary and, if detail
// is not nil, its detail: ErrNotFound if there is no summary, ErrData (and
// a note) if either is not what Save writes.
func (s *Redis) readEntry(t policy.ThreadID, sum, detail *redis.StringCmd) (Entry, error) {
	key := s.keys.HistoryEntry(t)
	v, err := sum.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Entry{}, ErrNotFound
	case store.IsDataError(err):
		s.problems.add(key, "", "", "not a hash: skipped")
		return Entry{}, fmt.Errorf("%w: %s: %w", ErrData, key, err)
	case err != nil:
		return Entry{}, fmt.Errorf("%s: %w", key, err)
	}
	var w wireEntry
	if err := json.Unmarshal([]byte(v), &w); err != nil {
		s.problems.add(key, fieldSummary, v, "not a JSON history summary: skipped")
		return Entry{}, fmt.Errorf("%w: %s: not a JSON history summary: %w", ErrData, key, err)
	}
	w.Senders, w.Queued = nil, nil // a listing is summaries only, whatever the field held
	if detail != nil {
		d, err := detail.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return Entry{}, fmt.Errorf("%s: %w", key, err)
		}
		var wd wireDetail
		if d != "" {
			if err := json.Unmarshal([]byte(d), &wd); err != nil {
				s.problems.add(key, fieldDetail, d, "not a JSON history detail: skipped")
				return Entry{}, fmt.Errorf("%w: %s: not a JSON history detail: %w", ErrData, key, err)
			}
		}
		w.Senders, w.Queued = wd.Senders, wd.Queued
	}
	e := w.entry()
	e.Thread = t // the key says whose it is, whatever the value claims
	return ownedEntry(e), nil
}
