package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// TestHistoryAPIBothPaths: Direct and Client (through NewHandler) answer
// the same storms, storm and queue ids: a storm still live (its counts
// and state completed from the store), a near miss whose live record is
// gone, and the refusals of what is unknown or malformed.
func TestHistoryAPIBothPaths(t *testing.T) {
	st, hs := store.NewMemory(), history.NewMemory(0)
	d := newTestDirectWith(t, st, hs)
	ctx, now := context.Background(), time.Now()
	l := policy.Limits{MaxReplies: 2, Window: time.Hour, BlockFor: 6 * time.Hour}
	storm := storetest.NewThread()
	for i := range 4 { // 2 counted, the 3rd crosses, the 4th is blocked
		r := store.Record{Thread: storm, Message: storetest.NewKey(), Kind: policy.KindReply, Audience: 3000,
			Sender: "user" + string(rune('a'+i)) + "@example.org", Subject: "Re: all", Now: now, Limits: l, Retention: time.Hour}
		if _, err := st.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	refs := []history.QueueRef{{Node: "mx1", ID: "Q1", Kind: "reply", Status: history.QueueAccepted, Time: now},
		{Node: "mx2", ID: "Q2", Kind: "reply", Status: history.QueueAccepted, Time: now.Add(time.Millisecond)}}
	if err := hs.AddQueued(ctx, storm, refs, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The entry as the recorder last wrote it: behind the live counts.
	if err := hs.Save(ctx, history.Entry{Thread: storm, Subject: "all", Audience: 3000, FirstSeen: now,
		LastSeen: now, StormAt: now, StormRule: "max_replies", Accepted: 2, Refused: 1, Lists: []string{"all@example.org"},
		Queued: refs[:1]}, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	near := storetest.NewThread() // only its entry is left
	if err := hs.Save(ctx, history.Entry{Thread: near, Subject: "parking", Audience: 2600, FirstSeen: now.Add(-time.Hour),
		LastSeen: now.Add(-time.Minute), NearMissAt: now.Add(-time.Minute), Accepted: 1}, time.Hour, 100); err != nil {
		t.Fatal(err)
	}

	const token = "0123456789abcdef0123456789abcdef"
	srv := httptest.NewServer(NewHandler(d, true, token, nil))
	defer srv.Close()
	c := NewClient(srv.URL, token, 5*time.Second, "test")
	since := now.Add(-2 * time.Hour)
	for name, api := range map[string]HistoryAPI{"direct": d, "client": c} {
		t.Run(name, func(t *testing.T) {
			views, err := api.Storms(ctx, since, false, 0)
			if err != nil || len(views) != 1 {
				t.Fatalf("Storms without near misses: %+v, %v", views, err)
			}
			v := views[0]
			if v.Thread != string(storm) || v.Kind != KindStorm || v.Accepted != 2 || v.Refused != 2 || v.Saved != 6000 ||
				v.State != StateBlocked || v.StormRule != "max_replies" {
				t.Errorf("storm: %+v: want the live counts (2 accepted, 2 refused), saved 3000×2, state blocked", v)
			}
			all, err := api.Storms(ctx, since, true, 0)
			if err != nil || len(all) != 2 || all[0].Thread != string(storm) || all[1].Kind != KindNearMiss ||
				all[1].StormAt != nil || all[1].NearMissAt == nil || all[1].State != "" {
				t.Errorf("Storms with near misses: %+v, %v", all, err)
			}
			if one, err := api.Storms(ctx, since, true, 1); err != nil || len(one) != 1 {
				t.Errorf("Storms limit 1: %+v, %v", one, err)
			}
			if late, err := api.Storms(ctx, now.Add(time.Hour), true, 0); err != nil || len(late) != 0 {
				t.Errorf("Storms since the future: %+v, %v", late, err)
			}
			s, err := api.Storm(ctx, storm)
			if err != nil || len(s.Senders) != 4 || len(s.Queued) != 2 || s.Queued[1].Node != "mx2" || s.Refused != 2 {
				t.Errorf("Storm: %+v, %v: want 4 senders and both queue ids", s, err)
			}
			q, err := api.Queued(ctx, storm)
			if err != nil || !reflect.DeepEqual(ids(q), []string{"mx1/Q1", "mx2/Q2"}) {
				t.Errorf("Queued: %+v, %v", q, err)
			}
			if _, err := api.Storm(ctx, "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "0123456789abcdef") ||
				!strings.Contains(err.Error(), "unknown") {
				t.Errorf("Storm of an unknown thread: %v", err)
			}
			if _, err := api.Storms(ctx, since, true, history.MaxLimit+1); err == nil || !strings.Contains(err.Error(), "limit") {
				t.Errorf("Storms over the limit: %v", err)
			}
		})
	}
	// Malformed requests are refused with 400, naming what is wrong.
	for _, path := range []string{"/admin/storms?since=yesterday", "/admin/storms?since=2026-12-01T00:00:00Z&limit=x",
		"/admin/storms/zz", "/admin/threads/zz/queued"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Host = "127.0.0.1:9357"
		rec := httptest.NewRecorder()
		NewHandler(d, true, token, nil).ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/admin/storms?since=2026-12-01T00:00:00Z", nil)
	req.Host = "127.0.0.1:9357"
	rec := httptest.NewRecorder()
	NewHandler(d, true, token, nil).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /admin/storms without the token: %d", rec.Code)
	}
}

func ids(refs []history.QueueRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Node+"/"+r.ID)
	}
	return out
}
