package store_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestMemoryVerdictWhileListingStorms: with 200,000 stormed threads in
// the memory store, a client asks GET /admin/threads?limit=1 of the admin
// API in a loop while decisions arrive at 5,000 a second; the 99th
// percentile of their latency (from when each was due to its Record's
// answer) stays under 50 ms.
func TestMemoryVerdictWhileListingStorms(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 threads: not with -short")
	}
	const n = 200_000
	m := store.NewMemoryWith(store.MemoryConfig{MaxThreads: 2 * n, MaxBytes: 1 << 30})
	ctx, base := context.Background(), time.Now()
	stormed := policy.Limits{DeliveryBudget: 2999, Window: time.Hour, BlockFor: 6 * time.Hour}
	for i := range n {
		r, _ := capRecord(base.Add(time.Duration(i)*time.Microsecond), i)
		r.Kind, r.Limits = policy.KindReply, stormed
		if got, err := m.Record(ctx, r); err != nil || got.Status != policy.StatusCrossed {
			t.Fatalf("thread %d: %+v, %v, want crossed", i, got, err)
		}
	}
	api, err := admin.NewDirect(admin.Config{Backend: "memory", Retention: 24 * time.Hour}, m, history.NewMemory(0),
		func(events.Event) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC() // the fill's garbage is not the listing's
	const token = "listing-test-token"
	srv := httptest.NewServer(admin.NewHandler(api, true, token))
	defer srv.Close()

	stop, listed := make(chan struct{}), make(chan int)
	go func() {
		calls := 0
		defer func() { listed <- calls }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/threads?limit=1", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /admin/threads?limit=1: %s", resp.Status)
				return
			}
			calls++
		}
	}()
	// Each decision is due at its time on a fixed schedule, and its
	// latency runs from then: one held up delays those due behind it.
	const records, every = 5_000, 200 * time.Microsecond
	lat := make([]time.Duration, 0, records)
	t0 := time.Now()
	for i := range records {
		due := t0.Add(time.Duration(i) * every)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		r, _ := capRecord(base.Add(time.Second+time.Duration(i)*time.Microsecond), n+i)
		if _, err := m.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(due))
	}
	close(stop)
	calls := <-listed
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	t.Logf("%d stormed threads, %d listings: Record p99 %v, worst %v", n, calls, p99, lat[len(lat)-1])
	if calls == 0 {
		t.Fatal("no listing ran")
	}
	if p99 >= 50*time.Millisecond {
		t.Errorf("Record p99 %v while listing storms, want under 50ms", p99)
	}
}
