package history

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

func testConfig() Config {
	c := Defaults()
	c.Node = "mx1"
	c.Limits = policy.Limits{MaxReplies: 10}
	return c
}

// TestFullQueueDropsAndCounts: with the loop not draining, notes beyond
// the queue are dropped and counted at once, never waited for.
func TestFullQueueDropsAndCounts(t *testing.T) {
	cfg := testConfig()
	cfg.Queue = 4
	r, err := newRecorder(cfg, NewMemory(0), store.NewMemory(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := Note{Thread: "0123456789abcdef", Rule: policy.RuleCounted, Action: policy.ActionAccept, Kind: policy.KindReply, QueueID: "Q1", Time: time.Now()}
	start := time.Now()
	for range 10 {
		r.Note(n)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("10 notes took %s", took)
	}
	if d := r.Stats.Dropped.Load(); d != 6 {
		t.Errorf("dropped %d, want 6 (queue 4)", d)
	}
	r.Note(Note{Thread: "0123456789abcdef", Rule: policy.RuleStoreError})
	r.Note(Note{Rule: policy.RuleCounted})
	if d := r.Stats.Dropped.Load(); d != 6 {
		t.Errorf("notes with nothing to keep were queued or dropped: %d", d)
	}
	go r.run()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !r.Close(ctx) || r.Stats.Queued.Load() != 4 {
		t.Errorf("after Close: %d queue ids written, want the 4 queued", r.Stats.Queued.Load())
	}
	r.Note(n) // after Close: nothing, no panic
}

// TestNoteRacesClose: notes from many goroutines while Close runs never
// panic, block or get lost uncounted. Run with -race -count=10.
func TestNoteRacesClose(t *testing.T) {
	cfg := testConfig()
	cfg.Queue = 16
	r, err := NewRecorder(cfg, NewMemory(0), store.NewMemory(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r.Note(Note{Thread: policy.ThreadID("00000000000000" + string(rune('a'+g)) + "0"), Rule: policy.RuleCounted,
					Action: policy.ActionAccept, Kind: policy.KindReply, QueueID: string(rune('A' + i%26)), Count: i, Time: time.Now()})
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	closed := r.Close(ctx)
	wg.Wait()
	if !closed {
		t.Fatal("Close did not finish")
	}
	if r.Stats.WriteErrors.Load() != 0 {
		t.Errorf("%d write errors", r.Stats.WriteErrors.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.NearMiss = 0 }, "report.near_miss"},
		{func(c *Config) { c.NearMiss = 1.01 }, "report.near_miss"},
		{func(c *Config) { c.History = 0 }, "report.history"},
		{func(c *Config) { c.MaxStorms = 0 }, "report.max_storms"},
		{func(c *Config) { c.Node = "" }, "node"},
	} {
		c := testConfig()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, tc.want)
		}
	}
	if err := testConfig().Validate(); err != nil {
		t.Error(err)
	}
}
