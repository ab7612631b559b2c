package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

func newTestDirect(t *testing.T, st Store) *Direct {
	t.Helper()
	d, err := NewDirect(Config{Backend: "memory", Retention: 24 * time.Hour}, st,
		func(events.Event) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStormsBehindQuietThreads: two blocked threads followed by 300 quiet
// ones; storms (200 most recent threads before) lists both.
func TestStormsBehindQuietThreads(t *testing.T) {
	st := store.NewMemory()
	d := newTestDirect(t, st)
	ctx, now := context.Background(), time.Now()
	l := policy.Limits{MaxReplies: 1, Window: time.Hour, BlockFor: 6 * time.Hour}
	rec := func(th policy.ThreadID, at time.Time) {
		t.Helper()
		r := store.Record{Thread: th, Message: storetest.NewKey(), Kind: policy.KindReply, Audience: 3000,
			Sender: "a@example.org", Subject: "Re: all", Now: at, Limits: l, Retention: 24 * time.Hour}
		if _, err := st.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var blocked []string
	for range 2 {
		th := storetest.NewThread()
		rec(th, now.Add(-time.Minute))
		rec(th, now.Add(-time.Minute)) // crosses max_replies 1
		blocked = append(blocked, string(th))
	}
	for i := range 300 {
		rec(storetest.NewThread(), now.Add(-30*time.Second+time.Duration(i)*time.Millisecond))
	}
	views, err := d.Threads(ctx, 200, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range views {
		got = append(got, v.Thread)
	}
	slices.Sort(got)
	slices.Sort(blocked)
	if !slices.Equal(got, blocked) {
		t.Errorf("storms = %q, want the two blocked threads %q", got, blocked)
	}
}

// TestThreadsLimitBounded: /admin/threads refuses a limit above
// store.MaxListLimit with a clear error instead of building a page of
// every thread.
func TestThreadsLimitBounded(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef" // the admin API's token (auth.go)
	h := NewHandler(newTestDirect(t, store.NewMemory()), false, token)
	for q, want := range map[string]int{
		"limit=100000000": http.StatusBadRequest,
		fmt.Sprintf("limit=%d", store.MaxListLimit+1): http.StatusBadRequest,
		fmt.Sprintf("limit=%d", store.MaxListLimit):   http.StatusOK,
		"limit=0":   http.StatusBadRequest,
		"":          http.StatusOK,
		"all=1":     http.StatusOK,
		"limit=abc": http.StatusBadRequest,
	} {
		req := httptest.NewRequest(http.MethodGet, "/admin/threads?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("GET /admin/threads?%s: %d %s, want %d", q, rec.Code, rec.Body, want)
		}
		if want == http.StatusBadRequest && strings.HasPrefix(q, "limit=1") && !strings.Contains(rec.Body.String(), fmt.Sprint(store.MaxListLimit)) {
			t.Errorf("GET /admin/threads?%s: %s, want the maximum named", q, rec.Body)
		}
	}
	if _, err := newTestDirect(t, store.NewMemory()).Threads(context.Background(), store.MaxListLimit+1, true); err == nil {
		t.Error("Direct.Threads accepted a limit above the maximum")
	}
}
