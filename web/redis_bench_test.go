package web_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/web"
)

// BenchmarkOverviewRedis1000 is the overview of 90 days holding 1,000
// storms as the daemon serves it on the Redis backend: the history read
// from a real Redis through admin.Direct, summarised and rendered. Each
// storm is the size docs/redis.md costs: 80 reply senders, 81 queue ids.
func BenchmarkOverviewRedis1000(b *testing.B) {
	r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{testenv.StartRedis(b)}, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx, now := context.Background(), time.Now()
	for i := range 1000 {
		last := now.Add(-time.Duration(i) * 2 * time.Hour)
		e := store.HistoryEntry{
			Thread: policy.ThreadID(fmt.Sprintf("%016x", i+1)), Subject: "Q3 all-staff town hall: agenda and dial-in details",
			Sender: "ceo@example.org", Lists: []string{"all-staff@example.org", "managers@example.org"}, Audience: 850_000,
			FirstSeen: last.Add(-time.Hour), LastSeen: last, StormAt: last.Add(-30 * time.Minute), StormRule: "max_replies",
			NearMissAt: last.Add(-40 * time.Minute), Accepted: 10, Refused: 70, Senders: map[string]string{},
		}
		for j := range 81 {
			sender := fmt.Sprintf("firstname.lastname%02d@nhs.example.org", j)
			e.Senders[sender] = "counted"
			e.Queued = append(e.Queued, store.QueueRef{Node: fmt.Sprintf("mx%d.example.org", j%3), ID: fmt.Sprintf("4Q%08X", j),
				Kind: "reply", Sender: sender, Status: store.QueueAccepted, Time: last})
		}
		if err := r.SaveHistory(ctx, e, 2160*time.Hour, 0); err != nil {
			b.Fatal(err)
		}
	}
	api, err := admin.NewDirect(admin.Config{Backend: "redis", Retention: 24 * time.Hour}, r,
		func(events.Event) string { return "" }, nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := web.New(web.Config{History: api})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/?range=90d", nil))
		if w.Code != 200 || !strings.Contains(w.Body.String(), ">1000<") {
			b.Fatalf("%d: no 1000 storms in the totals", w.Code)
		}
	}
}
