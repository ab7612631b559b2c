package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// liveKeys are the keys a running daemon takes from its configuration
// file when told to re-read it (SIGHUP), by name or by section ("policy."):
// the ones read per message from the filter's configuration snapshot,
// which is swapped whole, and the log level. Every other key is read once
// at start (a listener, a store connection, the history recorder, the
// notifier): a change to it takes effect at restart.
var liveKeys = []string{"mode", "log.level", "store.on_error", "lists", "list_policy", "policy.", "gate."}

// Live reports whether key takes effect when the daemon re-reads its
// configuration, rather than at restart.
func Live(key string) bool {
	for _, k := range liveKeys {
		if key == k || strings.HasSuffix(k, ".") && strings.HasPrefix(key, k) {
			return true
		}
	}
	return false
}

// Reload compares next, the configuration read again while the daemon
// runs, with running, the one in force, and returns the one to put in
// force: next's values of the live keys (Live) other than pinned, and
// running's of every other key. changed are the live keys whose value it
// changes; restart are the other keys whose value in next differs, and so
// takes effect only at restart. Both are in the order of keys. running
// and next are not modified.
func Reload(running, next *Config, pinned ...string) (applied *Config, changed, restart []string) {
	out := *next // the maps and slices are next's: nothing writes to them
	for _, k := range keys {
		was, now := k.val(running).get(), k.val(next).get()
		if reflect.DeepEqual(was, now) {
			continue
		}
		if Live(k.name) && !slices.Contains(pinned, k.name) {
			changed = append(changed, k.name)
			continue
		}
		restart = append(restart, k.name)
		k.val(&out).set(was)
	}
	return &out, changed, restart
}

// CheckReload reports why next may not replace running while the daemon
// runs, or nil. A file read again that names no list (lists, list_policy)
// while running has some is refused: an emptied or truncated file would
// otherwise count every list as a small audience and let a storm through.
// Running without lists takes a restart.
func CheckReload(running, next *Config) error {
	had := len(running.Lists) + len(running.ListPolicy)
	if had > 0 && len(next.Lists)+len(next.ListPolicy) == 0 {
		return fmt.Errorf("config: the file names no list (lists, list_policy) while %d %s in force; "+
			"a reload keeps lists (an empty or cut-short file is refused): restart to run without them",
			had, plural(had, "is", "are"))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
