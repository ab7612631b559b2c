package milter

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestMemoryStoreErrorFollowsOnError: with the memory backend there is no
// fallback store, yet on_error=accept must still fail open when the memory
// store itself errors (here: its context has ended), with rule store_error
// and a log line; on_error=tempfail still tempfails.
func TestMemoryStoreErrorFollowsOnError(t *testing.T) {
	for _, tc := range []struct {
		onError string
		want    policy.Action
	}{
		{OnErrorAccept, policy.ActionAccept},
		{OnErrorTempfail, policy.ActionTempfail},
	} {
		t.Run(tc.onError, func(t *testing.T) {
			cfg := testConfig()
			cfg.OnError = tc.onError
			logs := &syncBuffer{}
			f, err := NewFilter(cfg, store.NewMemory(), nil, slog.New(slog.NewTextHandler(logs, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the store call's deadline has passed
			m := &Message{
				Sender: "ann@example.org",
				Rcpts:  []string{listAddr},
				Headers: policy.Headers{
					MessageID: "<r1@example.org>", InReplyTo: "<root@example.org>", References: "<root@example.org>",
					Subject: "RE: lunch", To: []string{listAddr},
				},
			}
			d := f.Decide(ctx, m)
			if d.Action != tc.want || d.Rule != policy.RuleStoreError {
				t.Errorf("verdict %s/%s, want %s/%s", d.Action, d.Rule, tc.want, policy.RuleStoreError)
			}
			if d.Fallback || f.Stats.StoreErrors.Load() != 1 {
				t.Errorf("fallback %v, store errors %d: want no fallback (there is none), one error", d.Fallback, f.Stats.StoreErrors.Load())
			}
			if !strings.Contains(logs.String(), "store unavailable") || !strings.Contains(logs.String(), "on_error="+tc.onError) {
				t.Errorf("log %q: want the store failure and the on_error choice", logs.String())
			}
		})
	}
}
