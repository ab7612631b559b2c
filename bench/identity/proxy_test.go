package identity

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
)

// hook counts what a go-redis client sends: one entry per command it
// processes alone and per pipeline, naming the commands, and on which
// node (the connection's address) when the client is a Cluster's.
type hook struct {
	mu    sync.Mutex
	trips []string
}

func (h *hook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = strings.ToLower(c.Name())
		}
		h.add(strings.Join(names, "+"))
		return next(ctx, cmds)
	}
}

func (h *hook) add(s string) {
	h.mu.Lock()
	h.trips = append(h.trips, strings.ToLower(s))
	h.mu.Unlock()
}

func (h *hook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trips
	h.trips = nil
	return t
}

// TestProxyCountsWhatTheClientSends drives a go-redis client through the
// proxy against a real Redis and compares the proxy's trips with what the
// client's own hook saw: single commands, a pipeline, a transaction, a
// script with its NOSCRIPT fallback, a large value (several reads), an
// error reply, RESP3 maps; and it attributes every connection to this
// process.
func TestProxyCountsWhatTheClientSends(t *testing.T) {
	rec := NewRecorder()
	addr := redisenv.Start(t)
	p, err := NewProxy(rec, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := rec.Own("me", func() (int, error) { return os.Getpid(), nil }); err != nil {
		t.Fatal(err)
	}
	h := &hook{}
	c := redis.NewClient(&redis.Options{Addr: p.Addr, DisableIdentity: true, MaxRetries: -1, PoolSize: 1})
	c.AddHook(h)
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil { // dials: HELLO, then PING
		t.Fatal(err)
	}
	begin := time.Now()
	h.take()

	big := strings.Repeat("x", 300<<10) // several reads each way
	script := redis.NewScript(fmt.Sprintf("return %d", time.Now().UnixNano()))
	steps := []struct {
		name     string
		run      func() error
		wantCmds string // the proxy's command names
	}{
		{"set", func() error { return c.Set(ctx, "k", "v", 0).Err() }, "set"},
		{"get", func() error { return c.Get(ctx, "k").Err() }, "get"},
		{"missing key (nil reply)", func() error { _ = c.Get(ctx, "nope").Err(); return nil }, "get"},
		{"pipeline", func() error {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "a", "1", 0)
				p.Incr(ctx, "a")
				p.HSet(ctx, "h", "f", "v", "g", "w")
				return nil
			})
			return err
		}, "set+incr+hset"},
		{"map reply (RESP3)", func() error { return c.HGetAll(ctx, "h").Err() }, "hgetall"},
		{"transaction", func() error {
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "a")
				p.Expire(ctx, "a", time.Hour)
				return nil
			})
			return err
		}, "multi+incr+expire+exec"},
		{"script, not loaded: EVALSHA answered NOSCRIPT, then EVAL", func() error { return script.Run(ctx, c, []string{"k"}).Err() }, "evalsha(NOSCRIPT)"},
		{"script, loaded", func() error { return script.Run(ctx, c, []string{"k"}).Err() }, "evalsha"},
		{"large value", func() error { return c.Set(ctx, "big", big, 0).Err() }, "set"},
		{"large reply", func() error { return c.Get(ctx, "big").Err() }, "get"},
		{"error reply", func() error { _ = c.Incr(ctx, "h").Err(); return nil }, "incr(WRONGTYPE)"},
	}
	for _, st := range steps {
		from := time.Now()
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		client := h.take()
		got := rec.Trips("me", from, time.Now())
		var names []string // a new connection's HELLO aside (go-redis may dial for a pipeline)
		for _, tr := range got {
			if !Background(tr, "stormguard:") {
				names = append(names, tr.Names())
			}
		}
		t.Logf("%-60s client %v, proxy %v", st.name, client, names)
		want := []string{st.wantCmds}
		if strings.HasSuffix(st.wantCmds, "(NOSCRIPT)") {
			want = append(want, "eval") // go-redis falls back to EVAL: a second trip
		}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("%s: proxy saw %v, want %v", st.name, names, want)
		}
		if len(got) != len(client) {
			t.Errorf("%s: proxy counted %d trips, the client's hook %d (%v)", st.name, len(got), len(client), client)
		}
		for _, tr := range got {
			if tr.End.Before(tr.Start) {
				t.Errorf("%s: trip ends before it starts", st.name)
			}
		}
	}
	if all := rec.Trips("me", begin, time.Now()); Rounds(all) != len(all) {
		t.Errorf("sequential trips make %d rounds, want %d", Rounds(all), len(all))
	}
	if errs := rec.Errors(); len(errs) > 0 {
		t.Errorf("proxy errors: %v", errs)
	}
}

// TestProxyRounds: trips that overlap in time are one round.
func TestProxyRounds(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	trips := []Trip{
		{Start: at(0), End: at(5)},
		{Start: at(1), End: at(3)},
		{Start: at(4), End: at(9)}, // overlaps the first
		{Start: at(10), End: at(12)},
		{Start: at(13), End: at(14)},
	}
	if got := Rounds(trips); got != 3 {
		t.Errorf("Rounds = %d, want 3", got)
	}
	if got := Rounds(nil); got != 0 {
		t.Errorf("Rounds(nil) = %d", got)
	}
}

// TestBackground: the timers' trips are told apart from a message's.
func TestBackground(t *testing.T) {
	for _, c := range []struct {
		cmds []string
		want bool
	}{
		{[]string{"hello 3"}, true},
		{[]string{"cluster slots"}, true},
		{[]string{"hscan stormguard:lists 0 count"}, true},
		{[]string{"sscan stormguard:exempt 0"}, true},
		{[]string{"get stormguard:mode"}, true},
		{[]string{"multi", "rpush stormguard:{abc}:queued x", "ltrim stormguard:{abc}:queued 0", "pexpire stormguard:{abc}:queued 1", "exec"}, true},
		{[]string{"evalsha 1234 6 stormguard:{abc}:replies"}, false},
		{[]string{"get stormguard:link:{k}"}, false},
		{[]string{"mget stormguard:link:{k} stormguard:link:{j}"}, false},
		{[]string{"set stormguard:link:{k} t nx"}, false},
		{[]string{"hscan stormguard:{abc}:senders 0"}, false},
	} {
		if got := Background(Trip{Cmds: c.cmds}, "stormguard:"); got != c.want {
			t.Errorf("Background(%v) = %v, want %v", c.cmds, got, c.want)
		}
	}
}
