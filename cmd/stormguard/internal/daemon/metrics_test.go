package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// TestBlockedGauge: the gauge is the store's count of blocked threads: a
// storm counts, an allowed one does not.
func TestBlockedGauge(t *testing.T) {
	m := store.NewMemory()
	ctx := context.Background()
	storm := storetest.Reply(storetest.NewThread(), time.Now(), 3000, 1)
	for range 2 {
		storm.Message = storetest.NewKey()
		if _, err := m.Record(ctx, storm); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newBlockedCollector(m, 0, time.Second))
	gauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("Gather = %v, %v", mfs, err)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	if got := gauge(); got != 1 {
		t.Errorf("stormguard_blocked_threads = %v with one storm, want 1", got)
	}
	if err := m.SetOverride(ctx, storm.Thread, policy.OverrideAllow, 0); err != nil {
		t.Fatal(err)
	}
	if got := gauge(); got != 0 {
		t.Errorf("stormguard_blocked_threads = %v with the storm allowed, want 0", got)
	}
}
