package events

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNotifierDropsWhenFull: with its queue full, the notifier drops new
// events and counts them, and emit returns at once.
func TestNotifierDropsWhenFull(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	n, err := NewNotifier(Config{Queue: 1, PublishTimeout: time.Second,
		Publish: func(ctx context.Context, _ string) error {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.Emit(Event{Type: TypeStorm, Thread: "0000000000000001"})
	<-entered // the worker holds the first event
	start := time.Now()
	for i := range 20 {
		n.Emit(Event{Type: TypeStorm, Thread: fmt.Sprintf("%016d", i+2)})
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("20 emits took %v", took)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Close(ctx)
	o := n.outlets[0]
	total := o.sent.Load() + o.dropped.Load() + n.inDrop.Load()
	// At most four events get through: the one the worker holds, one in the
	// outlet's queue, one in the dispatcher's hand and one in the
	// notifier's queue (each queue holds 1).
	if total != 21 || o.sent.Load() > 4 || o.dropped.Load()+n.inDrop.Load() < 17 {
		t.Errorf("sent %d, dropped %d+%d: want every event sent or dropped, most dropped", o.sent.Load(), o.dropped.Load(), n.inDrop.Load())
	}
	s := n.Stats()
	if s.Dropped != n.inDrop.Load() || len(s.Outlets) != 1 || s.Outlets[0].Name != "redis" ||
		s.Outlets[0].Sent != o.sent.Load() || s.Outlets[0].Dropped != o.dropped.Load() {
		t.Errorf("Stats() = %+v, want the counters above", s)
	}
}

func TestConfigValidate(t *testing.T) {
	publish := func(context.Context, string) error { return nil }
	for _, tc := range []struct {
		c   Config
		err string
	}{
		{Config{Queue: 1}, ""},
		{Config{Queue: 10, WebhookURL: "https://hooks.example/x", WebhookTimeout: time.Second, Publish: publish, PublishTimeout: time.Second}, ""},
		{Config{Queue: 0}, "queue"},
		{Config{Queue: 1, WebhookURL: "ftp://x", WebhookTimeout: time.Second}, "not an http(s) URL"},
		{Config{Queue: 1, WebhookURL: "https://hooks.example/x"}, "webhook timeout"},
		{Config{Queue: 1, Publish: publish}, "publish timeout"},
	} {
		err := tc.c.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.c, err, tc.err)
		}
	}
}

// TestEmitRacingClose: emits from many goroutines while Close runs never
// panic (send on a closed channel), and every emit that got in before Close
// is handled or counted.
func TestEmitRacingClose(t *testing.T) {
	n, err := NewNotifier(Config{Queue: 8, PublishTimeout: time.Second,
		Publish: func(context.Context, string) error { return nil }}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range 200 {
				n.Emit(Event{Type: TypeStorm, Thread: fmt.Sprintf("%08d%08d", g, i)})
			}
		}()
	}
	close(start)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !n.Close(ctx) {
		t.Error("Close did not finish delivering")
	}
	wg.Wait()
	n.Emit(Event{Type: TypeStorm}) // after Close: ignored
}
