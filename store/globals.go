package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/policy"
)

// MaxListMembers caps a list size: a bigger one (a typo, or 2^63-1 that
// would overflow an audience sum and refuse every reply) is used as this
// many, and reported. Ten million members, times the few lists a message
// can name, stays far inside an int64 and Lua's 2^53.
const MaxListMembers = 10_000_000

// maxProblems is how many bad values Globals describes one by one; the
// rest are only counted (Globals.Invalid).
const maxProblems = 20

// globalsChunk is how many entries one HSCAN or SSCAN asks for: each
// chunk is one call with its own deadline, so a hash of any size loads.
var globalsChunk int64 = 2000

// ErrData marks an error about what the store holds rather than reaching
// it: a key of the wrong type (WRONGTYPE). Retrying does not help; an
// operator must fix the key.
var ErrData = errors.New("store: bad data")

// IsDataError reports whether err is about the data in the store (ErrData,
// or Redis's WRONGTYPE on any key), not about reaching the store.
func IsDataError(err error) bool {
	if errors.Is(err, ErrData) {
		return true
	}
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE")
}

// Problem is one site setting in the store left out or changed because it
// is not usable as written.
type Problem struct {
	Key   string // the Redis key (stormguard:lists, stormguard:listpolicy, stormguard:exempt, stormguard:posters, stormguard:mode)
	Field string // the hash field or set member; "" for a string key
	Value string // as stored, cut to 64 characters
	Why   string // what is wrong and what the daemon does instead
}

// problems collects the Problems of one read: the first maxProblems in
// full, all of them counted by key.
type problems struct {
	list    []Problem
	invalid map[string]int
}

func newProblems(keys ...string) *problems {
	p := &problems{invalid: make(map[string]int, len(keys))}
	for _, k := range keys {
		p.invalid[k] = 0 // present at 0, for the metric
	}
	return p
}

func (p *problems) add(key, field, value, why string) {
	p.invalid[key]++
	if len(p.list) < maxProblems {
		if r := []rune(value); len(r) > 64 {
			value = string(r[:63]) + "…"
		}
		p.list = append(p.list, Problem{Key: key, Field: field, Value: value, Why: why})
	}
}

// parseListSize reads a stored list size. ok is false when the value is
// left out; why is "" when it is used as written.
func parseListSize(v string) (n int, ok bool, why string) {
	s := strings.TrimSpace(v)
	n, err := strconv.Atoi(s)
	switch {
	case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-"):
		return MaxListMembers, true, fmt.Sprintf("too large: counted as %d members (the maximum)", MaxListMembers)
	case err != nil:
		return 0, false, "not a whole number: left out (the list counts as 1 recipient)"
	case n <= 0:
		return 0, false, "not positive: left out (the list counts as 1 recipient)"
	case n > MaxListMembers:
		return MaxListMembers, true, fmt.Sprintf("more than %d: counted as %d members (the maximum)", MaxListMembers, MaxListMembers)
	}
	return n, true, ""
}

// Globals implements Store. It reads the lists and list policy hashes,
// the exempt set and the posters set in chunks (HSCAN, SSCAN: each chunk one call with its own deadline, so any
// size loads), then the mode. A value an operator mistyped (a list size
// that is not a positive number, an address without @, an unknown mode)
// is left out or capped and described in Globals.Problems; a key of the
// wrong type fails the read with ErrData.
func (s *Redis) Globals(ctx context.Context) (Globals, error) {
	if err := ctx.Err(); err != nil {
		return Globals{}, fmt.Errorf("store: globals: %w", err)
	}
	lk, ek, pk, mk, lpk := s.keys.Lists(), s.keys.Exempt(), s.keys.Posters(), s.keys.Mode(), s.keys.ListPolicy()
	p := newProblems(lk, ek, pk, mk, lpk)

	rawLists := map[string]string{} // HSCAN may return a field twice
	if err := s.scan(ctx, lk, true, p, func(kv []string) {
		for i := 0; i+1 < len(kv); i += 2 {
			rawLists[kv[i]] = kv[i+1]
		}
	}); err != nil {
		return Globals{}, err
	}
	rawPolicies := map[string]string{}
	if err := s.scan(ctx, lpk, true, p, func(kv []string) {
		for i := 0; i+1 < len(kv); i += 2 {
			rawPolicies[kv[i]] = kv[i+1]
		}
	}); err != nil {
		return Globals{}, err
	}
	rawExempt := map[string]struct{}{}
	if err := s.scan(ctx, ek, false, p, func(members []string) {
		for _, m := range members {
			rawExempt[m] = struct{}{}
		}
	}); err != nil {
		return Globals{}, err
	}
	rawPosters := map[string]struct{}{}
	if err := s.scan(ctx, pk, false, p, func(members []string) {
		for _, m := range members {
			rawPosters[m] = struct{}{}
		}
	}); err != nil {
		return Globals{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	mv, err := s.client.Get(cctx, mk).Result()
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Globals{}, globalsErr(mk, err)
	}

	g := Globals{Lists: make(map[string]int, len(rawLists)), Mode: parseMode(mv)}
	for field, v := range rawLists {
		a, err := normAddr("list", field)
		if err != nil || !strings.Contains(a, "@") {
			p.add(lk, field, v, "the field is not a list address (want local@domain): left out")
			continue
		}
		n, ok, why := parseListSize(v)
		if why != "" {
			p.add(lk, field, v, why)
		}
		if ok {
			g.Lists[a] = max(g.Lists[a], n)
		}
	}
	for field, v := range rawPolicies {
		a, err := normAddr("list", field)
		if err != nil || !strings.Contains(a, "@") {
			p.add(lpk, field, v, "the field is not a list address (want local@domain): left out")
			continue
		}
		lp, err := policy.ParseListPolicy(v)
		if err != nil {
			p.add(lpk, field, v, "not a list policy ("+strings.ReplaceAll(err.Error(), "\n", "; ")+"): left out, the list follows the site's policy")
			continue
		}
		if lp.IsZero() {
			continue
		}
		if g.ListPolicies == nil {
			g.ListPolicies = make(map[string]policy.ListPolicy, len(rawPolicies))
		}
		g.ListPolicies[a] = lp
	}
	for e := range rawExempt {
		a, err := normAddr("exempt", e)
		if err != nil || !strings.Contains(a, "@") {
			p.add(ek, e, "", "not a sender (want local@domain) or a domain (want @domain): left out")
			continue
		}
		g.Exempt = append(g.Exempt, a)
	}
	slices.Sort(g.Exempt)
	g.Exempt = slices.Compact(g.Exempt)
	for m := range rawPosters {
		a, err := normAddr("poster", m)
		if err != nil {
			p.add(pk, m, "", "not a sender, @domain or SASL login (empty or with spaces): left out")
			continue
		}
		g.Posters = append(g.Posters, a)
	}
	slices.Sort(g.Posters)
	g.Posters = slices.Compact(g.Posters)
	if mv != "" && g.Mode == "" {
		p.add(mk, "", mv, "not enforce, monitor or off: the configured mode applies")
	}
	slices.SortFunc(p.list, func(a, b Problem) int { return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Field, b.Field)) })
	g.Problems, g.Invalid = p.list, p.invalid
	return g, nil
}

// scan reads key with HSCAN (hash) or SSCAN, one chunk per call, each
// with its own deadline, passing each chunk's reply to each. A Redis user
// whose ACL lacks +hscan or +sscan (an ACL written without them)
// gets one HGETALL or SMEMBERS instead, and a Problem saying so.
func (s *Redis) scan(ctx context.Context, key string, hash bool, p *problems, each func([]string)) error {
	var cursor uint64
	for {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout())
		var (
			chunk []string
			next  uint64
			err   error
		)
		if hash {
			chunk, next, err = s.client.HScan(cctx, key, cursor, "", globalsChunk).Result()
		} else {
			chunk, next, err = s.client.SScan(cctx, key, cursor, "", globalsChunk).Result()
		}
		cancel()
		if err != nil && cursor == 0 && strings.HasPrefix(err.Error(), "NOPERM") {
			return s.readWhole(ctx, key, hash, p, each)
		}
		if err != nil {
			return globalsErr(key, err)
		}
		each(chunk)
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// readWhole is scan for a Redis user that may not scan: one call.
func (s *Redis) readWhole(ctx context.Context, key string, hash bool, p *problems, each func([]string)) error {
	cmd, grant := "SMEMBERS", "+sscan"
	if hash {
		cmd, grant = "HGETALL", "+hscan"
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	var chunk []string
	if hash {
		m, err := s.client.HGetAll(cctx, key).Result()
		if err != nil {
			return globalsErr(key, err)
		}
		for k, v := range m {
			chunk = append(chunk, k, v)
		}
	} else {
		var err error
		if chunk, err = s.client.SMembers(cctx, key).Result(); err != nil {
			return globalsErr(key, err)
		}
	}
	p.list = append(p.list, Problem{Key: key, Why: fmt.Sprintf("the Redis user may not run %s, so it was read with one %s, which a big key cannot finish within redis.timeout: add %s to the ACL user (docs/redis.md)",
		strings.TrimPrefix(grant, "+"), cmd, grant)})
	each(chunk)
	return nil
}

// callTimeout is the deadline of each call Globals makes.
func (s *Redis) callTimeout() time.Duration {
	if s.timeout > 0 {
		return s.timeout
	}
	return DefaultTimeout
}

// globalsErr wraps a failed read of key: a WRONGTYPE is ErrData.
func globalsErr(key string, err error) error {
	if IsDataError(err) {
		return fmt.Errorf("%w: globals: %s: %w", ErrData, key, err)
	}
	return fmt.Errorf("store: globals: %s: %w", key, err)
}
