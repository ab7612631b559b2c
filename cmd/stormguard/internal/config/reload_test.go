package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLiveKeysAreKeys(t *testing.T) {
	for _, k := range liveKeys {
		found := false
		for _, s := range keys {
			found = found || s.name == k || strings.HasSuffix(k, ".") && strings.HasPrefix(s.name, k)
		}
		if !found {
			t.Errorf("live key %q names no key", k)
		}
	}
	for key, want := range map[string]bool{
		"policy.max_replies": true, "gate.posters": true, "lists": true, "mode": true, "log.level": true,
		"listen": false, "store.backend": false, "redis.addrs": false, "http.listen": false,
		"milter.max_sessions": false, "log.format": false, "store.refresh": false, "redis.timeout": false,
		"policyx": false,
	} {
		if got := Live(key); got != want {
			t.Errorf("Live(%q) = %v, want %v", key, got, want)
		}
	}
}

// TestReload: the live keys come from the new file, every other changed
// key keeps its running value and is named, and what the packages get
// (the filter's store timeout and retention) follows.
func TestReload(t *testing.T) {
	running, err := Load(writeConfig(t, `
listen: inet:127.0.0.1:7357
policy:
  max_replies: 10
  reject_text: "5.7.1 old {thread}"
lists:
  all-staff@example.org: 3000
redis:
  timeout: 300ms
store:
  retention: 12h
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := Load(writeConfig(t, `
listen: inet:127.0.0.1:7358
log:
  level: debug
policy:
  max_replies: 3
  reject_text: "5.7.1 new {thread}"
lists:
  all-staff@example.org: 3000
  students@example.org: 30000
redis:
  timeout: 1s
store:
  retention: 12h
http:
  listen: 127.0.0.1:9999
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	applied, changed, restart := Reload(running, next)
	if want := []string{"log.level", "policy.max_replies", "policy.reject_text", "lists"}; !slices.Equal(changed, want) {
		t.Errorf("changed = %v, want %v", changed, want)
	}
	if want := []string{"listen", "redis.timeout", "http.listen"}; !slices.Equal(restart, want) {
		t.Errorf("restart = %v, want %v", restart, want)
	}
	if applied.Listen != "inet:127.0.0.1:7357" || applied.HTTP.Listen != running.HTTP.Listen || applied.Log.Level != "debug" {
		t.Errorf("applied listen %q http.listen %q log.level %q", applied.Listen, applied.HTTP.Listen, applied.Log.Level)
	}
	fc := applied.FilterConfig()
	if fc.Policy.Limits.MaxReplies != 3 || fc.RejectText != "5.7.1 new {thread}" || len(fc.Lists) != 2 {
		t.Errorf("filter config: max_replies %d, reject_text %q, lists %v", fc.Policy.Limits.MaxReplies, fc.RejectText, fc.Lists)
	}
	if fc.StoreTimeout != 300*time.Millisecond || fc.Retention != 12*time.Hour {
		t.Errorf("filter config: store timeout %s, retention %s; want the running 300ms and 12h", fc.StoreTimeout, fc.Retention)
	}
	if err := applied.validate(); err != nil {
		t.Errorf("applied config does not validate: %v", err)
	}
	if running.Policy.Limits.MaxReplies != 10 || next.Listen != "inet:127.0.0.1:7358" {
		t.Error("Reload modified its arguments")
	}

	// Pinned live keys stay as they run, and are named with the others.
	applied, changed, restart = Reload(running, next, "policy.max_replies")
	if applied.Policy.Limits.MaxReplies != 10 || slices.Contains(changed, "policy.max_replies") || !slices.Contains(restart, "policy.max_replies") {
		t.Errorf("pinned policy.max_replies: applied %d, changed %v, restart %v", applied.Policy.Limits.MaxReplies, changed, restart)
	}

	// The same file again changes nothing.
	if _, changed, restart := Reload(running, running); changed != nil || restart != nil {
		t.Errorf("reload of the running config: changed %v, restart %v", changed, restart)
	}
}

// TestCheckReload: a file read again without lists is refused while
// lists are in force, and only then.
func TestCheckReload(t *testing.T) {
	withLists, err := Load(writeConfig(t, "lists:\n  all-staff@example.org: 3000\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	withPolicy, err := Load(writeConfig(t, "list_policy:\n  all-staff@example.org: {max_replies: 3}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := Load(writeConfig(t, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		running, next *Config
		refused       bool
	}{
		{"lists, then an empty file", withLists, empty, true},
		{"list_policy, then an empty file", withPolicy, empty, true},
		{"lists, then list_policy only", withLists, withPolicy, false},
		{"no lists, then an empty file", empty, empty, false},
		{"no lists, then lists", empty, withLists, false},
	} {
		err := CheckReload(tc.running, tc.next)
		if (err != nil) != tc.refused {
			t.Errorf("%s: CheckReload = %v, refused want %v", tc.name, err, tc.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "names no list") {
			t.Errorf("%s: %q does not say why", tc.name, err)
		}
	}
}
