package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/store"
)

// TestBadListValuesAreLogged: bad values an operator wrote into the lists
// hash, the exempt set and the mode are each logged by the refresh that
// reads them, naming the key and the field; an overflowing size is capped.
func TestBadListValuesAreLogged(t *testing.T) {
	addr := redisenv.Start(t)
	st, err := store.OpenRedis(store.RedisConfig{Addrs: []string{addr}, Prefix: "bad:", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k := st.Keys()
	redisenv.CLI(t, addr, "HSET", k.Lists(), "staff@example.org", "3000", "word@example.org", "lots",
		"neg@example.org", "-40", "maxint@example.org", "9223372036854775807")
	redisenv.CLI(t, addr, "SADD", k.Exempt(), "example.net")
	redisenv.CLI(t, addr, "SET", k.Mode(), "of")

	logs := &syncBuffer{}
	cfg := testConfig()
	cfg.Lists = map[string]int{"cfg@example.org": 1 << 62}
	f, err := NewFilter(cfg, st, nil, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.GlobalsLoaded(); ok {
		t.Error("GlobalsLoaded before the first refresh")
	}
	if err := f.RefreshGlobals(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`msg="bad site setting in the store" key=bad:lists field=word@example.org value=lots problem="not a whole number`,
		`key=bad:lists field=neg@example.org value=-40 problem="not positive`,
		`key=bad:lists field=maxint@example.org value=9223372036854775807 problem="more than 10000000: counted as 10000000`,
		`key=bad:exempt field=example.net value="" problem="not a sender`,
		`key=bad:mode field="" value=of problem="not enforce, monitor or off`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	g := f.globals.Load()
	if g.site.Lists["maxint@example.org"] != store.MaxListMembers || g.site.Lists["cfg@example.org"] != store.MaxListMembers ||
		g.site.Lists["staff@example.org"] != 3000 || g.site.Lists["word@example.org"] != 0 {
		t.Errorf("lists in force: %v", g.site.Lists)
	}
	if inv := f.GlobalsInvalid(); inv["bad:lists"] != 3 || inv["bad:exempt"] != 1 || inv["bad:mode"] != 1 {
		t.Errorf("GlobalsInvalid = %v", inv)
	}
	if ok, _ := f.GlobalsLoaded(); !ok {
		t.Error("GlobalsLoaded false after a refresh")
	}
}

// globalsStore answers Globals with what the test sends, one call at a time.
type globalsStore struct {
	store.Store
	next chan globalsResult
}

type globalsResult struct {
	g   store.Globals
	err error
}

func (s *globalsStore) Globals(ctx context.Context) (store.Globals, error) {
	select {
	case r := <-s.next:
		return r.g, r.err
	case <-ctx.Done():
		return store.Globals{}, ctx.Err()
	}
}

// TestRefresherLogsDataErrorsApartFromOutages: an outage that goes on is
// logged once, but a key of the wrong type that appears meanwhile is
// logged at once, as what it is; until the globals first load,
// GlobalsLoaded says why not.
func TestRefresherLogsDataErrorsApartFromOutages(t *testing.T) {
	st := &globalsStore{next: make(chan globalsResult)}
	logs := &syncBuffer{}
	cfg := testConfig()
	cfg.Refresh = time.Millisecond
	f, err := NewFilter(cfg, st, nil, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.RunRefresher(ctx) }()

	outage := errors.New("store: globals: stormguard:lists: dial tcp 127.0.0.1:6379: connect: connection refused")
	wrongType := fmt.Errorf("%w: globals: stormguard:lists: WRONGTYPE Operation against a key holding the wrong kind of value", store.ErrData)
	// Each send returns once the refresher took the result; the one after
	// it returns once that result was logged.
	for _, r := range []globalsResult{{err: outage}, {err: outage}, {err: wrongType}, {err: outage}, {err: wrongType}} {
		st.next <- r
	}
	st.next <- globalsResult{err: outage}
	// The send returns when the refresher took the outage, which it
	// records just after: poll for it, with a deadline.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		ok, why := f.GlobalsLoaded()
		if !ok && strings.Contains(why, "connection refused") {
			break
		}
		if ok || time.Now().After(deadline) {
			t.Errorf("GlobalsLoaded = %v, %q before any load; want false and why", ok, why)
			break
		}
	}
	st.next <- globalsResult{g: store.Globals{Lists: map[string]int{"all@example.org": 500}}}
	st.next <- globalsResult{g: store.Globals{Lists: map[string]int{"all@example.org": 500}}}
	cancel()
	<-done

	out := logs.String()
	if n := strings.Count(out, "cannot refresh site settings"); n != 1 {
		t.Errorf("outage logged %d times, want 1 (then again only after a minute or a new error):\n%s", n, out)
	}
	if n := strings.Count(out, "site settings in the store are malformed"); n != 1 || !strings.Contains(out, "level=ERROR") ||
		!strings.Contains(out, "WRONGTYPE") {
		t.Errorf("data error logged %d times, want 1 at ERROR with the WRONGTYPE:\n%s", n, out)
	}
	if !strings.Contains(out, "site settings refresh works again") {
		t.Errorf("no recovery line:\n%s", out)
	}
	if ok, _ := f.GlobalsLoaded(); !ok {
		t.Error("GlobalsLoaded false after a load, then a failure")
	}
}
