package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
)

// TestReadyzUntilSiteSettingsLoad: a daemon that cannot read the site
// settings (here the lists key has the wrong type) is not ready, says why,
// and logs the key's problem as bad data; once the key is fixed it loads,
// turns ready, and logs each bad list size by key and field.
func TestReadyzUntilSiteSettingsLoad(t *testing.T) {
	rd := redisenv.Start(t)
	redisenv.CLI(t, rd, "SET", "stormguard:lists", "all-staff@example.org=3000")
	d := startDaemon(t, fmt.Sprintf("store:\n  backend: redis\n  refresh: 20ms\nredis:\n  addrs: [%s]\n  timeout: 2s\n", rd))
	code, body := get(t, "http://"+d.http+"/readyz")
	if code != 503 || !strings.Contains(body, "never loaded") || !strings.Contains(body, "WRONGTYPE") {
		t.Errorf("/readyz with a wrong-typed lists key: %d %q, want 503 naming the cause", code, body)
	}
	d.log.wait(t, 0, "site settings in the store are malformed", "stormguard:lists", "WRONGTYPE")
	if m := scrape(t, d); m["stormguard_globals_loaded"] != 0 {
		t.Errorf("stormguard_globals_loaded = %v before any load", m["stormguard_globals_loaded"])
	}

	redisenv.CLI(t, rd, "DEL", "stormguard:lists")
	redisenv.CLI(t, rd, "HSET", "stormguard:lists", "all-staff@example.org", "3000", "students@example.org", "30k")
	d.log.wait(t, 0, "site settings loaded", "lists=1")
	d.log.wait(t, 0, "bad site setting in the store", "key=stormguard:lists", "field=students@example.org", "value=30k")
	if code, body := get(t, "http://"+d.http+"/readyz"); code != 200 {
		t.Errorf("/readyz after the lists loaded: %d %q", code, body)
	}
	m := scrape(t, d)
	if m["stormguard_globals_loaded"] != 1 || m[`stormguard_globals_invalid{key="stormguard:lists"}`] != 1 {
		t.Errorf("globals metrics: loaded %v, invalid lists %v", m["stormguard_globals_loaded"], m[`stormguard_globals_invalid{key="stormguard:lists"}`])
	}
}
