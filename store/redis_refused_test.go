package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
	"github.com/stormguard/stormguard/store/storetest"
)

// usedMemory is the Redis server's used_memory, in bytes.
func usedMemory(t *testing.T, addr string) int64 {
	t.Helper()
	for line := range strings.Lines(redisenv.CLI(t, addr, "INFO", "memory")) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("used_memory %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("INFO memory: no used_memory")
	return 0
}

// TestRedisRefusedMailWritesNothingThatGrows: on Redis, 2,000 refused
// auto-replies to 101 mailboxes, each naming a thread of its own, write no
// key (the storm stays blocked, the key count is the same); 2,000 refused
// replies from distinct 1,900-byte senders to the blocked storm leave its
// {T}:senders hash at store.MaxSenders senders of store.MaxSenderLen bytes.
func TestRedisRefusedMailWritesNothingThatGrows(t *testing.T) {
	addr := redisenv.Start(t)
	h := openRedis(t, addr, false)
	defer h.Close()
	ctx, now := context.Background(), time.Now()
	storm := storetest.Reply(storetest.NewThread(), now, 3000, 1)
	for range 2 { // count, then cross
		storm.Message = storetest.NewKey()
		if _, err := h.Record(ctx, storm); err != nil {
			t.Fatal(err)
		}
	}
	const n = 2_000
	keys, mem := redisenv.CLI(t, addr, "DBSIZE"), usedMemory(t, addr)
	for i := range n {
		own := storetest.NewKey()
		r := store.Record{
			Thread: own.Thread(), Message: own, Kind: policy.KindAutoReply, Audience: 101,
			Sender: "away" + strconv.Itoa(i) + "@example.org", Subject: "Out of office: all hands",
			Now: now, Limits: storm.Limits, Retention: 24 * time.Hour, Links: []policy.Key{own},
		}
		if _, err := h.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	keys2, mem2 := redisenv.CLI(t, addr, "DBSIZE"), usedMemory(t, addr)
	t.Logf("%d refused auto-replies: keys %s -> %s, used_memory %d -> %d (%+.0f B each)",
		n, strings.TrimSpace(keys), strings.TrimSpace(keys2), mem, mem2, float64(mem2-mem)/n)
	if keys2 != keys {
		t.Errorf("refused auto-replies took the key count from %s to %s", strings.TrimSpace(keys), strings.TrimSpace(keys2))
	}

	pad := strings.Repeat("x", 1900)
	for i := range n {
		r := storm
		r.Message, r.Sender = storetest.NewKey(), strconv.Itoa(i)+pad+"@example.org"
		got, err := h.Record(ctx, r)
		if err != nil || got.Status != policy.StatusBlocked {
			t.Fatalf("refused reply %d: %+v, %v, want blocked", i, got, err)
		}
	}
	senders := store.NewKeys(h.prefix).Senders(storm.Thread)
	hlen := strings.TrimSpace(redisenv.CLI(t, addr, "HLEN", senders))
	usage := strings.TrimSpace(redisenv.CLI(t, addr, "MEMORY", "USAGE", senders))
	t.Logf("%d refused replies from 1,912-byte senders: %s holds %s senders, %s bytes", n, senders, hlen, usage)
	if hlen != strconv.Itoa(store.MaxSenders) {
		t.Errorf("%s holds %s senders, want %d", senders, hlen, store.MaxSenders)
	}
	if u, _ := strconv.Atoi(usage); u > store.MaxSenders*(store.MaxSenderLen+128) {
		t.Errorf("%s takes %d bytes, want at most %d", senders, u, store.MaxSenders*(store.MaxSenderLen+128))
	}
}
