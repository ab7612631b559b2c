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
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

func newTestDirect(t *testing.T, st Store) *Direct {
	t.Helper()
	return newTestDirectWith(t, st, history.NewMemory(0))
}

func newTestDirectWith(t *testing.T, st Store, h history.Store) *Direct {
	t.Helper()
	d, err := NewDirect(Config{Backend: "memory", Retention: 24 * time.Hour}, st, h,
		func(events.Event) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStormsBehindQuietThreads: two blocked threads followed by 300 quiet
// ones; storms lists both, however many quiet threads are more recent.
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
	h := NewHandler(newTestDirect(t, store.NewMemory()), false, token, nil)
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

// TestListPolicyThroughHandler: a list's own policy set through the
// admin API (as the subcommands do with the memory store) is in the
// store, Lists shows the effective policy of a message to each list (the
// store's over the config's over the site's), a bad policy is refused
// naming the setting, and DeleteList removes size and policy.
func TestListPolicyThroughHandler(t *testing.T) {
	st := store.NewMemory()
	site := policy.Defaults()
	cfg := Config{Backend: "memory", Retention: time.Hour, Policy: site,
		Lists:        map[string]int{"cfg@example.org": 50, "all@example.org": 3000},
		ListPolicies: map[string]policy.ListPolicy{"cfg@example.org": {Action: policy.ConfigHold}, "all@example.org": {Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 5}}}}
	changed := 0
	d, err := NewDirect(cfg, st, history.NewMemory(0), func(events.Event) string { return "" }, func(context.Context) { changed++ })
	if err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef"
	srv := httptest.NewServer(NewHandler(d, true, token, nil))
	defer srv.Close()
	c := NewClient(srv.URL, token, 5*time.Second, "test")
	ctx := context.Background()

	v, err := c.SetListPolicy(ctx, "All@Example.org", "max_replies=3;posters=Comms@Example.org")
	if err != nil || v.Limits["max_replies"] != 3 || v.Policy != `{"max_replies":3,"posters":["comms@example.org"]}` || v.PolicyFrom != "memory" ||
		v.Action != "reject" || v.MinAudience != 2500 || changed != 1 {
		t.Fatalf("SetListPolicy: %+v, %v (changed %d)", v, err, changed)
	}
	if g, _ := st.Globals(ctx); g.ListPolicies["all@example.org"].String() != v.Policy {
		t.Errorf("store holds %v", g.ListPolicies)
	}
	lists, err := c.Lists(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range lists {
		got[l.List] = fmt.Sprintf("%d %s %q %s %d %d %s %v", l.Members, l.From, l.Policy, l.PolicyFrom, l.Limits["max_replies"], l.Limits["delivery_budget"], l.Action, l.Posters)
	}
	want := map[string]string{
		"all@example.org": `3000 config "{\"max_replies\":3,\"posters\":[\"comms@example.org\"]}" memory 3 1000000 reject [comms@example.org]`,
		"cfg@example.org": `50 config "{\"action\":\"hold\"}" config 10 1000000 hold []`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Lists:\n got %q\nwant %q", got, want)
	}
	for text, wantErr := range map[string]string{
		"max_replies=-1":     "max_replies",
		"action=drop":        "action",
		"posters=<b>x</b> y": "posters",
	} {
		if _, err := c.SetListPolicy(ctx, "all@example.org", text); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("SetListPolicy(%q): %v, want an error naming %s", text, err, wantErr)
		}
	}
	if _, err := c.SetListPolicy(ctx, "nolist", "max_replies=1"); err == nil {
		t.Error("SetListPolicy on an address without @ succeeded")
	}
	left, err := c.DeleteList(ctx, "all@example.org")
	if err != nil || left.Policy != `{"max_replies":5}` || left.PolicyFrom != "config" || left.Limits["max_replies"] != 5 || left.Members != 3000 {
		t.Errorf("DeleteList: %+v, %v: want the config's size and policy left", left, err)
	}
	if g, _ := st.Globals(ctx); len(g.ListPolicies) != 0 {
		t.Errorf("policy left in the store: %v", g.ListPolicies)
	}
}
