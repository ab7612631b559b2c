// Package listsync reads the member counts of distribution lists from
// where a site keeps its lists: an LDAP directory (OpenLDAP, Active
// Directory) and Postfix alias and virtual maps. Each Source returns
// list address -> member count, with nested groups and aliases expanded
// and each final mailbox counted once; Collect runs them all and returns
// either every count or an error naming the source that failed.
//
// It must not write anything: the caller (stormguard lists sync, serve's
// periodic sync) writes what Collect returned, and only when it returned
// no error, so a failed sync leaves the previous sizes in force. It does
// not read configuration files or flags (it takes a Config), and it never
// panics on what a directory or a map holds: odd values are skipped and
// counted.
package listsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Config says where the lists live. A Source is made for the LDAP
// directory when LDAP.URL is set, and one for the Postfix maps when any
// map is named.
type Config struct {
	LDAP LDAPConfig
	// AliasMaps are Postfix alias maps (type:path, e.g.
	// hash:/etc/aliases), read with postalias -s. Their keys are local
	// parts: each becomes a list in every AliasDomains domain.
	AliasMaps    []string
	AliasDomains []string
	// VirtualMaps are Postfix virtual alias maps (type:path), read with
	// postmap -s; their keys are full addresses.
	VirtualMaps []string
	// PostfixConfigDir is passed to postmap and postalias as -c; empty:
	// their default (/etc/postfix).
	PostfixConfigDir string
	// MinMembers: a list with fewer members is not written (a site has
	// thousands of one-member aliases; they are not distribution lists).
	MinMembers int
	// Timeout bounds one whole sync of every source.
	Timeout time.Duration
}

// Defaults is the Config with nothing to read.
func Defaults() Config {
	return Config{
		LDAP:       LDAPDefaults(),
		MinMembers: 2,
		Timeout:    2 * time.Minute,
	}
}

// Validate reports a Config that cannot work, naming the key.
func (c Config) Validate() error {
	if c.MinMembers < 1 {
		return fmt.Errorf("listsync.min_members: must be at least 1, got %d", c.MinMembers)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("listsync.timeout: must be positive, got %s", c.Timeout)
	}
	if len(c.AliasMaps) > 0 && len(c.AliasDomains) == 0 {
		return errors.New("listsync.alias_domains: alias maps are named but no domain: an alias key is a local part, so name the domain(s) it is a list of (e.g. [example.org])")
	}
	for _, m := range append(slices.Clone(c.AliasMaps), c.VirtualMaps...) {
		if typ, path, ok := strings.Cut(m, ":"); !ok || typ == "" || path == "" {
			return fmt.Errorf("listsync.alias_maps / virtual_maps: %q is not type:path (e.g. hash:/etc/postfix/virtual)", m)
		}
	}
	for _, d := range c.AliasDomains {
		if d == "" || strings.ContainsAny(d, "@ \t\r\n") {
			return fmt.Errorf("listsync.alias_domains: %q is not a domain", d)
		}
	}
	if c.LDAP.URL != "" {
		if err := c.LDAP.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Enabled reports whether any source is configured.
func (c Config) Enabled() bool {
	return c.LDAP.URL != "" || len(c.AliasMaps) > 0 || len(c.VirtualMaps) > 0
}

// Sources are the configured sources, LDAP first.
func (c Config) Sources() []Source {
	var out []Source
	if c.LDAP.URL != "" {
		out = append(out, &LDAP{cfg: c.LDAP})
	}
	if len(c.AliasMaps) > 0 || len(c.VirtualMaps) > 0 {
		out = append(out, &Maps{cfg: c})
	}
	return out
}

// Stats are what one source read.
type Stats struct {
	Lists   int // lists it found (before MinMembers)
	Skipped int // values it could not read (bad DN, control characters, ...)
}

// Source is where list sizes live.
type Source interface {
	// Name names the source in messages: "ldap ldap://host", "postfix maps".
	Name() string
	// Sizes reads every list's member count; on error, nothing it read
	// may be used.
	Sizes(ctx context.Context) (map[string]int, Stats, error)
}

// SourceError is a failed source: nothing was read from any source.
type SourceError struct {
	Source string
	Err    error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("list sync from %s failed: %v", e.Source, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// Result is what Collect read.
type Result struct {
	Sizes   map[string]int   // list address -> members, at least MinMembers
	Stats   map[string]Stats // per source name
	Below   int              // lists found with fewer than MinMembers, not in Sizes
	Elapsed time.Duration
}

// Collect runs every source within cfg.Timeout. A list that two sources
// name gets the larger count. If any source fails, Collect returns a
// *SourceError and no sizes at all.
func Collect(ctx context.Context, cfg Config, sources []Source) (Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := Result{Sizes: map[string]int{}, Stats: map[string]Stats{}}
	deadline, _ := ctx.Deadline()
	for _, s := range sources {
		sizes, st, err := s.Sizes(ctx)
		// A source's own timer (the LDAP client's, set to the time left)
		// may fire before the context's: past the deadline is a timeout.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || err != nil && !time.Now().Before(deadline) {
			err = fmt.Errorf("not done within listsync.timeout %s", cfg.Timeout)
		} else if err == nil && ctx.Err() != nil {
			err = ctx.Err() // the caller stopped it: nothing is used
		}
		if err != nil {
			return Result{}, &SourceError{Source: s.Name(), Err: err}
		}
		res.Stats[s.Name()] = st
		for addr, n := range sizes {
			res.Sizes[addr] = max(res.Sizes[addr], n)
		}
	}
	for addr, n := range res.Sizes {
		if n < cfg.MinMembers {
			delete(res.Sizes, addr)
			res.Below++
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// Change is one list whose size a sync changes; Old 0: new in the store.
type Change struct {
	List     string
	Old, New int
}

// Plan is what writing fresh over current changes, in address order.
// Lists in current that fresh lacks are not touched (they may have been
// registered by hand, or fallen below the minimum): unchanged counts the
// lists whose size is already right.
func Plan(current, fresh map[string]int) (changes []Change, unchanged int) {
	for _, addr := range slices.Sorted(maps.Keys(fresh)) {
		if current[addr] == fresh[addr] {
			unchanged++
			continue
		}
		changes = append(changes, Change{List: addr, Old: current[addr], New: fresh[addr]})
	}
	slices.SortFunc(changes, func(a, b Change) int { return cmp.Compare(a.List, b.List) })
	return changes, unchanged
}

// normAddr is an address as lists are keyed: trimmed, lower case; ok is
// false for what cannot be an address (empty, control characters inside,
// spaces outside a quoted local part).
func normAddr(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || strings.ContainsFunc(s, unicode.IsControl) {
		return "", false
	}
	if strings.ContainsAny(s, " \t") && !strings.HasPrefix(s, `"`) {
		return "", false
	}
	return s, true
}

// expand counts the distinct leaves reachable from root in a graph whose
// nodes' children are members(node) (ok false: a leaf, a final mailbox).
// A node seen twice (a cycle, or a group nested twice) is walked once.
func expand(root string, members func(string) ([]string, bool)) int {
	seen := map[string]bool{root: true}
	leaves := map[string]bool{}
	stack := []string{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		kids, _ := members(n)
		for _, k := range kids {
			if seen[k] {
				continue
			}
			seen[k] = true
			if _, group := members(k); group {
				stack = append(stack, k)
			} else {
				leaves[k] = true
			}
		}
	}
	return len(leaves)
}
