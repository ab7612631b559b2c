package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/store"
)

// TestGlobalsBadValues: what an operator mistypes with redis-cli is left
// out or capped, never silently: each bad value is a Problem naming the
// key and the field, and counted by key. A size of 2^63-1 (which summed
// into an audience would overflow and refuse every reply) is capped.
func TestGlobalsBadValues(t *testing.T) {
	h := openRedis(t, redisenv.Start(t), false)
	k := h.Keys()
	redisenv.CLI(t, h.addr, "HSET", k.Lists(),
		"good@example.org", "3000",
		"word@example.org", "three thousand",
		"neg@example.org", "-5",
		"zero@example.org", "0",
		"maxint@example.org", "9223372036854775807",
		"huge@example.org", "99999999999999999999999",
		"big@example.org", "20000000",
		"nolist", "40")
	redisenv.CLI(t, h.addr, "SADD", k.Exempt(), "boss@example.org", "@partner.example", "example.net")
	redisenv.CLI(t, h.addr, "SET", k.Mode(), "panic")

	g, err := h.Globals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"good@example.org": 3000, "maxint@example.org": store.MaxListMembers,
		"huge@example.org": store.MaxListMembers, "big@example.org": store.MaxListMembers}
	if fmt.Sprint(g.Lists) != fmt.Sprint(want) {
		t.Errorf("Lists = %v, want %v", g.Lists, want)
	}
	if strings.Join(g.Exempt, ",") != "@partner.example,boss@example.org" || g.Mode != "" {
		t.Errorf("Exempt %v, Mode %q", g.Exempt, g.Mode)
	}
	if g.Invalid[k.Lists()] != 7 || g.Invalid[k.Exempt()] != 1 || g.Invalid[k.Mode()] != 1 {
		t.Errorf("Invalid = %v, want 7 lists, 1 exempt, 1 mode", g.Invalid)
	}
	got := map[string]string{}
	for _, p := range g.Problems {
		got[p.Key+" "+p.Field] = p.Value + ": " + p.Why
	}
	for field, why := range map[string]string{
		k.Lists() + " word@example.org":   "three thousand: not a whole number",
		k.Lists() + " neg@example.org":    "-5: not positive",
		k.Lists() + " zero@example.org":   "0: not positive",
		k.Lists() + " maxint@example.org": "9223372036854775807: more than 10000000: counted as 10000000",
		k.Lists() + " huge@example.org":   "too large",
		k.Lists() + " big@example.org":    "20000000: more than 10000000",
		k.Lists() + " nolist":             "not a list address",
		k.Exempt() + " example.net":       "want @domain",
		k.Mode() + " ":                    "panic: not enforce, monitor or off",
	} {
		if !strings.Contains(got[field], why) {
			t.Errorf("problem %q = %q, want %q", field, got[field], why)
		}
	}
	if len(g.Problems) != 9 {
		t.Errorf("%d problems, want 9: %+v", len(g.Problems), g.Problems)
	}
}

// TestGlobalsListPolicy: list policies written with redis-cli are read
// with the globals; a mistyped one is left out (the list follows the
// site's policy), named, never a panic.
func TestGlobalsListPolicy(t *testing.T) {
	h := openRedis(t, redisenv.Start(t), false)
	k := h.Keys()
	redisenv.CLI(t, h.addr, "HSET", k.ListPolicy(),
		"All-Staff@Example.org", "max_replies=3; posters=comms@example.org",
		"other@example.org", "",
		"hold@example.org", "action=hold;delivery_budget=0",
		"json@example.org", `{"max_replies": 2, "posters": ["Comms@Example.org"]}`,
		"jsontypo@example.org", `{"max_replys": 2}`,
		"jsonbad@example.org", `{"max_replies": "many"}`,
		"typo@example.org", "max_replys=3",
		"neg@example.org", "max_replies=-3",
		"<b>x</b>", "max_replies=3",
		"crlf@example.org", "action=hold\r\nmax_replies=1")
	g, err := h.Globals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for a, p := range g.ListPolicies {
		got[a] = p.String()
	}
	want := map[string]string{
		"all-staff@example.org": `{"max_replies":3,"posters":["comms@example.org"]}`,
		"hold@example.org":      `{"delivery_budget":0,"action":"hold"}`,
		"json@example.org":      `{"max_replies":2,"posters":["comms@example.org"]}`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ListPolicies = %q, want %q", got, want)
	}
	if g.Invalid[k.ListPolicy()] != 6 {
		t.Errorf("Invalid = %v, want 6 for %s", g.Invalid, k.ListPolicy())
	}
	why := map[string]string{}
	for _, p := range g.Problems {
		why[p.Field] = p.Why
	}
	for field, w := range map[string]string{
		"typo@example.org": `"max_replys" is not`,
		"neg@example.org":  "max_replies:",
		"<b>x</b>":         "not a list address",
		"crlf@example.org": "action:",
	} {
		if !strings.Contains(why[field], w) || strings.ContainsAny(why[field], "\r\n") {
			t.Errorf("problem for %q = %q, want %q on one line", field, why[field], w)
		}
	}
}

// TestGlobalsWrongType: a key of the wrong type is a data error (ErrData),
// named, not an outage.
func TestGlobalsWrongType(t *testing.T) {
	h := openRedis(t, redisenv.Start(t), false)
	redisenv.CLI(t, h.addr, "SET", h.Keys().Lists(), "3000")
	_, err := h.Globals(context.Background())
	if !errors.Is(err, store.ErrData) || !store.IsDataError(err) || !strings.Contains(err.Error(), h.Keys().Lists()) ||
		!strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("Globals with a string lists key: %v, want ErrData naming the key", err)
	}
	redisenv.CLI(t, h.addr, "DEL", h.Keys().Lists())
	redisenv.CLI(t, h.addr, "HSET", h.Keys().Mode(), "a", "b")
	if _, err := h.Globals(context.Background()); !errors.Is(err, store.ErrData) || !strings.Contains(err.Error(), h.Keys().Mode()) {
		t.Errorf("Globals with a hash mode key: %v, want ErrData naming the key", err)
	}
}

// fillLists writes n list sizes into the lists hash, 10,000 per HSET.
func fillLists(t testing.TB, addr, key string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	pipe := c.Pipeline()
	for i := 0; i < n; i += 10000 {
		args := make([]any, 0, 20000)
		for j := i; j < min(i+10000, n); j++ {
			args = append(args, fmt.Sprintf("list%d@example.org", j), j%5000+1)
		}
		pipe.HSet(ctx, key, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGlobalsLoadsAHashTooBigForOneCall: a lists hash that one HGETALL
// cannot read within redis.timeout loads, chunk by chunk, each chunk
// within the timeout. (The 1M-entry figure: BenchmarkGlobals1M.)
func TestGlobalsLoadsAHashTooBigForOneCall(t *testing.T) {
	const n = 200_000
	addr := redisenv.Start(t)
	prefix := "big:"
	fillLists(t, addr, store.NewKeys(prefix).Lists(), n)
	const timeout = 100 * time.Millisecond
	defer store.SetGlobalsChunk(200)() // a chunk is far within the timeout, even under -race on a busy machine
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Prefix: prefix, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The premise: one call cannot read it within the timeout.
	c := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: timeout, ContextTimeoutEnabled: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if _, err := c.HGetAll(ctx, store.NewKeys(prefix).Lists()).Result(); err == nil {
		t.Skipf("HGETALL of %d fields finished within %s on this machine: the test proves nothing here", n, timeout)
	}
	cancel()
	// Redis goes on writing that reply after the client gave up: wait for it.
	if err := redis.NewClient(&redis.Options{Addr: addr}).Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	g, err := s.Globals(context.Background())
	if err != nil {
		t.Fatalf("Globals: %v", err)
	}
	if len(g.Lists) != n || g.Lists["list4999@example.org"] != 5000 || len(g.Problems) != 0 {
		t.Errorf("Globals read %d lists (list4999: %d), %d problems; want %d, 5000, 0", len(g.Lists), g.Lists["list4999@example.org"], len(g.Problems), n)
	}
	t.Logf("%d lists loaded in %s, %s per call", n, time.Since(start).Round(time.Millisecond), timeout)
}

// BenchmarkGlobals1M times loading a lists hash of 1,000,000 entries
// (docs/operations.md quotes it):
//
//	go test ./store/ -run '^$' -bench Globals1M -benchtime 3x
func BenchmarkGlobals1M(b *testing.B) {
	const n = 1_000_000
	addr := redisenv.Start(b)
	prefix := "big:"
	fillLists(b, addr, store.NewKeys(prefix).Lists(), n)
	s, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Prefix: prefix}) // the default redis.timeout
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for b.Loop() {
		g, err := s.Globals(context.Background())
		if err != nil || len(g.Lists) != n {
			b.Fatalf("Globals: %d lists, %v", len(g.Lists), err)
		}
	}
}
