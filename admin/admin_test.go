package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/store"
)

func TestIsLoopback(t *testing.T) {
	for listen, want := range map[string]bool{"127.0.0.1:9357": true, "[::1]:9357": true, "localhost:9357": true,
		"127.0.0.2:9357": true, "0.0.0.0:9357": false, ":9357": false, "192.0.2.1:9357": false, "mx1:9357": false} {
		if got := IsLoopback(listen); got != want {
			t.Errorf("IsLoopback(%q) = %v", listen, got)
		}
	}
}

// TestClientThroughHandler: Client and NewHandler speak the same API, and
// the handler's refusals reach the client as the operator's one line.
func TestClientThroughHandler(t *testing.T) {
	var published []events.Event
	changed := 0
	d, err := NewDirect(Config{Backend: "memory", Retention: time.Hour, Lists: map[string]int{"cfg@example.org": 50}, Mode: "enforce"},
		store.NewMemory(), history.NewMemory(0), func(e events.Event) string { published = append(published, e); return "" },
		func(context.Context) { changed++ })
	if err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef"
	srv := httptest.NewServer(NewHandler(d, true, token, nil))
	defer srv.Close()
	c := NewClient(srv.URL, token, 5*time.Second, "test")
	ctx := context.Background()

	if l, err := c.SetList(ctx, "All@Example.org", 3000); err != nil || l.List != "all@example.org" || l.Members != 3000 || l.From != "memory" {
		t.Errorf("SetList: %+v, %v", l, err)
	}
	if lists, err := c.Lists(ctx); err != nil || len(lists) != 2 || lists[0].From != "memory" || lists[1].From != "config" {
		t.Errorf("Lists: %+v, %v", lists, err)
	}
	if m, err := c.SetMode(ctx, "monitor", "alice"); err != nil || m.Mode != "monitor" || m.From != "memory" {
		t.Errorf("SetMode: %+v, %v", m, err)
	}
	if len(published) != 1 || published[0].Type != events.TypeMode || !strings.HasPrefix(published[0].By, TokenLabel) || changed != 2 {
		t.Errorf("events %+v, changed %d: want one mode event by the token's holder (not the alice the caller claims), two changes", published, changed)
	}
	if _, err := c.Thread(ctx, "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("Thread of an unknown id: %v", err)
	}
	if _, err := c.SetMode(ctx, "loud", "alice"); err == nil || !strings.Contains(err.Error(), `mode "loud"`) {
		t.Errorf("SetMode loud: %v", err)
	}

	req := httptest.NewRequest(http.MethodGet, "/admin/mode", nil)
	req.Host = "evil.example:80"
	rec := httptest.NewRecorder()
	NewHandler(d, true, token, nil).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("non-loopback Host on a loopback listener: %d %s", rec.Code, rec.Body)
	}
}

func TestParseThread(t *testing.T) {
	if got, err := ParseThread(" {3F9A0C1D2B4E5F60} "); err != nil || got != "3f9a0c1d2b4e5f60" {
		t.Errorf("ParseThread with braces: %q, %v", got, err)
	}
	if _, err := ParseThread("3f9a"); err == nil {
		t.Error("ParseThread accepted a short id")
	}
	var ae *Error
	if err := CheckList("nolist", 3); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("CheckList without @: %v", err)
	}
}
