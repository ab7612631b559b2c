package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/admin"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// openHistory opens the Redis at addr as the history the daemon writes:
// the store's client and key names under the default prefix.
func openHistory(t *testing.T, addr string) history.Store {
	t.Helper()
	r, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Timeout: 2 * time.Second, Prefix: store.DefaultPrefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return history.NewRedis(r.Client(), r.Keys())
}

// stormsSince runs `storms --since 1h --json` (with --near-misses if near).
func stormsSince(t *testing.T, config string, near bool) []admin.StormView {
	t.Helper()
	args := []string{"storms", "--since", "1h", "--json", "--config", config}
	if near {
		args = append(args, "--near-misses")
	}
	var views []admin.StormView
	if err := json.Unmarshal([]byte(mustRun(t, args...)), &views); err != nil {
		t.Fatal(err)
	}
	return views
}

// pollStorm polls `storms --since 1h --near-misses --json` until thread's
// view satisfies ok, for at most 15s (the recorder writes every 2s).
func pollStorm(t *testing.T, config string, thread policy.ThreadID, ok func(admin.StormView) bool) admin.StormView {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last admin.StormView
	for time.Now().Before(deadline) {
		for _, v := range stormsSince(t, config, true) {
			if v.Thread == string(thread) {
				if last = v; ok(v) {
					return v
				}
			}
		}
		time.Sleep(100 * time.Millisecond) // polling an external effect with a deadline
	}
	t.Fatalf("thread %s: history never showed what was expected within 15s; last %+v", thread, last)
	return last
}

// TestHistoryThroughPostfix: a storm and a near miss through a real
// Postfix on the Redis backend; `storms --since` shows the storm with the
// counts `show` gives, the near miss only with --near-misses, the queue
// ids Postfix gave each message let through, named by node; after a
// daemon restart the entry is still there and the new daemon goes on
// updating it.
func TestHistoryThroughPostfix(t *testing.T) {
	rd := redisenv.Start(t)
	sink := smtpenv.StartSink(t)
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000")
	yaml := fmt.Sprintf("node: mx-e2e\nstore:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\npolicy:\n  max_replies: 4\nreport:\n  near_miss: 0.5\n", rd)
	d1, stop1 := startStoppableDaemon(t, yaml)
	pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: "inet:" + d1.addr})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.Log())
		}
	})
	n := node{daemon: d1, postfix: pf}
	d1.log.wait(t, 0, "site settings loaded", "lists=1")
	config := writeConfig(t, yaml)

	const subject = "Office move"
	root, nearRoot := "hist-storm@example.org", "hist-near@example.org"
	thread, nearThread := threadOf(root), threadOf(nearRoot)
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	for i := 1; i <= 6; i++ {
		if r := replyAll(t, n, i, root, staffList, subject); r.OK() != (i <= 4) {
			t.Fatalf("reply-all %d: %v", i, r)
		}
	}
	if r := send(t, n, boss, []string{staffList}, originalMail(nearRoot, staffList, "Parking")); !r.OK() {
		t.Fatalf("near-miss original: %v", r)
	}
	for i := 1; i <= 2; i++ {
		if r := replyAll(t, n, i, nearRoot, staffList, "Parking"); !r.OK() {
			t.Fatalf("near-miss reply %d: %v", i, r)
		}
	}

	v := pollStorm(t, config, thread, func(v admin.StormView) bool { return v.Refused == 2 && v.Accepted == 4 })
	var shown admin.ThreadView
	if err := json.Unmarshal([]byte(mustRun(t, "show", string(thread), "--json", "--config", config)), &shown); err != nil {
		t.Fatal(err)
	}
	if v.Kind != admin.KindStorm || v.Accepted != shown.Accepted || v.Refused != shown.Blocked || v.Allowed != shown.Allowed ||
		v.Audience != shown.Audience || v.StormRule != "max_replies" || v.StormAt == nil || v.OriginalSender != boss ||
		!strings.EqualFold(v.Subject, subject) || !slices.Equal(v.Lists, []string{staffList}) ||
		v.Saved != int64(shown.Audience)*2 || v.State != admin.StateBlocked {
		t.Errorf("storms --since: %+v\nshow: %+v", v, shown)
	}
	near := pollStorm(t, config, nearThread, func(v admin.StormView) bool { return v.Accepted == 2 })
	if near.Kind != admin.KindNearMiss || near.StormAt != nil || near.NearMissAt == nil || near.Refused != 0 {
		t.Errorf("near miss: %+v", near)
	}
	if views := stormsSince(t, config, false); len(views) != 1 || views[0].Thread != string(thread) {
		t.Errorf("storms --since 1h without --near-misses: %+v, want the storm only", views)
	}
	table := mustRun(t, "storms", "--since", "1h", "--near-misses", "--config", config)
	for _, w := range []string{string(thread), string(nearThread), "storm", "near_miss", "max_replies", staffList} {
		if !strings.Contains(table, w) {
			t.Errorf("storms --since table lacks %q:\n%s", w, table)
		}
	}

	// The queue ids: the original and the 4 accepted replies, as Postfix
	// logged them, named by node; none for the 2 refused.
	hs := openHistory(t, rd)
	refs, err := hs.Queued(context.Background(), thread)
	if err != nil {
		t.Fatal(err)
	}
	log := pf.Log()
	kinds := map[string]int{}
	for _, r := range refs {
		kinds[r.Kind]++
		if r.Node != "mx-e2e" || r.ID == "" || r.Status != history.QueueAccepted || !strings.Contains(log, r.ID+":") {
			t.Errorf("queue ref %+v: want node mx-e2e, accepted, an id Postfix logged", r)
		}
	}
	if len(refs) != 5 || kinds["original"] != 1 || kinds["reply"] != 4 {
		t.Errorf("queue ids %+v: want the original and 4 replies", refs)
	}

	// Restart on the same Redis: the history is there, and the new daemon
	// (its milter at another address) goes on with the same entry.
	before := v
	stop1()
	d2, _ := startStoppableDaemon(t, yaml)
	d2.log.wait(t, 0, "site settings loaded", "lists=1")
	pf.SetMain("smtpd_milters", "inet:"+d2.addr)
	pf.Reload()
	n.daemon = d2
	if views := stormsSince(t, config, false); len(views) != 1 || views[0].Refused != 2 {
		t.Fatalf("after the restart: %+v", views)
	}
	if r := replyAll(t, n, 7, root, staffList, subject); r.Code != 550 {
		t.Fatalf("reply-all 7 after the restart: %v", r)
	}
	after := pollStorm(t, config, thread, func(v admin.StormView) bool { return v.Refused == 3 })
	if !after.FirstSeen.Equal(before.FirstSeen) || !after.StormAt.Equal(*before.StormAt) || after.Accepted != 4 {
		t.Errorf("after the restart: %+v, before %+v", after, before)
	}
}

// TestHistoryExpires: with report.history 2s, a storm's entry key expires
// in Redis and leaves the listing.
func TestHistoryExpires(t *testing.T) {
	rd := redisenv.Start(t)
	sink := smtpenv.StartSink(t)
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", staffList, "3000")
	// The entry is written at the recorder's next flush (every
	// history.FlushEvery) and expires at last seen + report.history: a
	// history no longer than the flush interval may end before it is
	// written, and is then never written at all.
	yaml := fmt.Sprintf("store:\n  backend: redis\n  refresh: 100ms\nredis:\n  addrs: [%s]\n  timeout: 500ms\npolicy:\n  max_replies: 1\nreport:\n  history: %s\n", rd, 2*history.FlushEvery)
	n := startNode(t, yaml, sink)
	n.log.wait(t, 0, "site settings loaded", "lists=1")
	config := writeConfig(t, yaml)
	root := "hist-expire@example.org"
	thread := threadOf(root)
	send(t, n, boss, []string{staffList}, originalMail(root, staffList, "Short-lived"))
	replyAll(t, n, 1, root, staffList, "Short-lived")
	if r := replyAll(t, n, 2, root, staffList, "Short-lived"); r.Code != 550 {
		t.Fatalf("reply-all 2: %v", r)
	}
	hs := openHistory(t, rd)
	key := "stormguard:{" + string(thread) + "}:history"
	written, gone := false, false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !gone; time.Sleep(100 * time.Millisecond) {
		exists := strings.TrimSpace(redisenv.CLI(t, rd, "EXISTS", key)) == "1"
		written = written || exists
		gone = written && !exists
	}
	if !gone {
		t.Fatalf("key %s: written %v, never expired within 20s", key, written)
	}
	m := scrape(t, n.daemon)
	if m["stormguard_history_entries_saved_total"] < 1 || m["stormguard_history_queue_ids_total"] != 2 ||
		m["stormguard_history_write_errors_total"] != 0 || m["stormguard_history_notes_dropped_total"] != 0 {
		t.Errorf("history metrics: saved %v, queue ids %v (want the original and the reply), errors %v, dropped %v",
			m["stormguard_history_entries_saved_total"], m["stormguard_history_queue_ids_total"],
			m["stormguard_history_write_errors_total"], m["stormguard_history_notes_dropped_total"])
	}
	if _, err := hs.Get(context.Background(), thread); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("Get after expiry: %v", err)
	}
	if views := stormsSince(t, config, true); len(views) != 0 {
		t.Errorf("storms --since after expiry: %+v", views)
	}
}

// TestStormsHostileText: a subject and sender with HTML, CR/LF, terminal
// escapes (ESC and the C1 CSI) and a spreadsheet formula reach the table
// and the CSV without a control character and with the formula defused,
// and the JSON as the same text, escaped.
func TestStormsHostileText(t *testing.T) {
	rd := redisenv.Start(t)
	hs := openHistory(t, rd)
	const subject = "<script>alert(1)</script>\r\n\x1b[31mRED\u009b2J\u202eevil"
	const sender = "=HYPERLINK(\"http://evil.example\")@evil.example"
	now := time.Now()
	e := history.Entry{Thread: "0123456789abcdef", Subject: subject, Sender: sender, Lists: []string{"+all@example.org"},
		Audience: 3000, FirstSeen: now.Add(-time.Minute), LastSeen: now, StormAt: now, StormRule: "max_replies", Accepted: 10, Refused: 2}
	if err := hs.Save(context.Background(), e, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\n", rd))
	clean := func(what, out string) {
		t.Helper()
		if i := strings.IndexFunc(out, func(r rune) bool {
			return (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || r == 0x202e
		}); i >= 0 {
			t.Errorf("%s: control character %q reaches the terminal:\n%q", what, out[i:i+1], out)
		}
	}
	table := mustRun(t, "storms", "--since", "1h", "--config", config)
	clean("table", table)
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "<script>alert(1)</script>") {
		t.Errorf("table: want a header and one line showing the text:\n%s", table)
	}
	out := mustRun(t, "storms", "--since", "1h", "--csv", "--config", config)
	clean("csv", out)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("csv: %v %q", err, rows)
	}
	col := map[string]string{}
	for i, h := range rows[0] {
		col[h] = rows[1][i]
	}
	if !strings.HasPrefix(col["original_sender"], "'=") || !strings.HasPrefix(col["lists"], "'+") ||
		!strings.Contains(col["subject"], "<script>") || col["refused"] != "2" {
		t.Errorf("csv row %v: want formulas defused, the text kept", col)
	}
	out = mustRun(t, "storms", "--since", "1h", "--json", "--config", config)
	clean("json", out)
	var views []admin.StormView
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 {
		t.Fatalf("json: %v %q", err, out)
	}
	if views[0].Subject != subject || views[0].OriginalSender != sender {
		t.Errorf("json: subject %q sender %q: want the text as it was, escaped", views[0].Subject, views[0].OriginalSender)
	}
}

// TestStormsNearMissesNeedsSince: near misses are history, which only
// --since reads.
func TestStormsNearMissesNeedsSince(t *testing.T) {
	if code, _, errb := run(t, "storms", "--near-misses", "--config", writeConfig(t, "")); code == 0 || !strings.Contains(errb, "--since") {
		t.Errorf("--near-misses without --since: exit %d %s", code, errb)
	}
}

// TestHistoryOnMemoryStore: with the memory store the history lives in
// the daemon, and `storms --since` reads it through the admin API, with
// the same counts as `show`; the thread's queue ids come from
// /admin/threads/T/queued.
func TestHistoryOnMemoryStore(t *testing.T) {
	sink := smtpenv.StartSink(t)
	n := startNode(t, "node: mx-mem\nstore:\n  backend: memory\nlists:\n  "+staffList+": 3000\npolicy:\n  max_replies: 2\n", sink)
	n.log.wait(t, 0, "stormguard started", "admin_api=true")
	config := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+n.http+"\n")
	root := "mem-hist@example.org"
	thread := threadOf(root)
	if r := send(t, n, boss, []string{staffList}, originalMail(root, staffList, "Lunch")); !r.OK() {
		t.Fatalf("original: %v", r)
	}
	for i := 1; i <= 3; i++ {
		if r := replyAll(t, n, i, root, staffList, "Lunch"); r.OK() != (i <= 2) {
			t.Fatalf("reply-all %d: %v", i, r)
		}
	}
	v := pollStorm(t, config, thread, func(v admin.StormView) bool { return v.Refused == 1 })
	var shown admin.ThreadView
	if err := json.Unmarshal([]byte(mustRun(t, "show", string(thread), "--json", "--config", config)), &shown); err != nil {
		t.Fatal(err)
	}
	if v.Kind != admin.KindStorm || v.Accepted != shown.Accepted || v.Refused != shown.Blocked || v.Audience != shown.Audience {
		t.Errorf("storms --since: %+v\nshow: %+v", v, shown)
	}
	code, body := apiDo(t, http.MethodGet, "http://"+n.http+"/admin/threads/"+string(thread)+"/queued", "", bearer())
	var refs []history.QueueRef
	if err := json.Unmarshal([]byte(body), &refs); code != http.StatusOK || err != nil || len(refs) != 3 || refs[0].Node != "mx-mem" || refs[0].Kind != "original" {
		t.Errorf("GET queued: %d %s", code, body)
	}
}
