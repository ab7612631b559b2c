package history_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWriteFailuresAreCountedAndLoggedOnce: with Redis unreachable, every
// failed write is counted, the log gets one line (rate-limited), and
// Close still returns within its deadline.
func TestWriteFailuresAreCountedAndLoggedOnce(t *testing.T) {
	r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))},
		Timeout: 100 * time.Millisecond, Prefix: "sg:"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var logs lockedBuffer
	cfg := history.Defaults()
	cfg.Node, cfg.Timeout, cfg.Limits = "mx1", 100*time.Millisecond, policy.Limits{MaxReplies: 2}
	rec, err := history.NewRecorder(cfg, history.NewRedis(r.Client(), r.Keys()), r, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rec.Note(history.Note{Thread: policy.ThreadID(fmt.Sprintf("%016x", i+1)), Rule: policy.RuleMaxReplies,
			Action: policy.ActionAccept, Kind: policy.KindReply, QueueID: "Q", Count: 2, Time: time.Now()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec.Close(ctx)
	if n := rec.Stats.WriteErrors.Load(); n != 5 {
		t.Errorf("write errors %d, want 5 (one per thread: its queue ids)", n)
	}
	if n := strings.Count(logs.String(), "history: cannot"); n != 1 {
		t.Errorf("%d log lines, want 1 (rate-limited):\n%s", n, logs.String())
	}
	if rec.Stats.Saved.Load() != 0 || rec.Stats.Queued.Load() != 0 {
		t.Errorf("saved %d, queued %d with Redis down", rec.Stats.Saved.Load(), rec.Stats.Queued.Load())
	}
}
