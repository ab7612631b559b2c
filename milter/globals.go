package milter

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// globals is the cached site-wide state every message reads: list sizes,
// exempt senders and the mode. It is replaced whole, never mutated, so
// readers need no lock.
type globals struct {
	lists  map[string]int
	exempt exemptSet
	mode   policy.Mode
}

// exemptSet matches senders exactly or by "@domain".
type exemptSet map[string]struct{}

func (e exemptSet) match(sender string) bool {
	if len(e) == 0 || sender == "" {
		return false
	}
	sender = strings.ToLower(sender)
	if _, ok := e[sender]; ok {
		return true
	}
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		_, ok := e[sender[i:]]
		return ok
	}
	return false
}

// mergeGlobals combines the config file's lists and exempt senders with the
// store's; the store wins for a list both name. The store's mode wins over
// the configured one.
func mergeGlobals(cfg Config, sg store.Globals) *globals {
	g := &globals{lists: make(map[string]int, len(cfg.Lists)+len(sg.Lists)), exempt: exemptSet{}, mode: cfg.Mode}
	for addr, n := range cfg.Lists {
		g.lists[strings.ToLower(addr)] = n
	}
	for addr, n := range sg.Lists {
		g.lists[strings.ToLower(addr)] = n
	}
	for _, s := range cfg.Exempt {
		g.exempt[strings.ToLower(strings.TrimSpace(s))] = struct{}{}
	}
	for _, s := range sg.Exempt {
		g.exempt[strings.ToLower(strings.TrimSpace(s))] = struct{}{}
	}
	switch sg.Mode {
	case policy.ModeEnforce, policy.ModeMonitor, policy.ModeOff:
		g.mode = sg.Mode
	}
	if g.mode == "" {
		g.mode = policy.ModeEnforce
	}
	return g
}

// RefreshGlobals re-reads the site-wide state from the store once. On error
// the previous state stays in force.
func (f *Filter) RefreshGlobals(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.StoreTimeout)
	defer cancel()
	sg, err := f.store.Globals(ctx)
	if err != nil {
		f.Stats.GlobalsErrors.Add(1)
		return err
	}
	next := mergeGlobals(f.cfg, sg)
	prev := f.globals.Swap(next)
	if prev == nil || prev.mode != next.mode || !maps.Equal(prev.lists, next.lists) || !maps.Equal(prev.exempt, next.exempt) {
		f.log.Info("site settings loaded", "mode", next.mode, "lists", len(next.lists),
			"list_members", sumValues(next.lists), "exempt", len(next.exempt), "exempt_senders", slices.Sorted(maps.Keys(next.exempt)))
	}
	return nil
}

// RunRefresher refreshes the globals every cfg.Refresh until ctx ends.
func (f *Filter) RunRefresher(ctx context.Context) {
	t := time.NewTicker(f.cfg.Refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := f.RefreshGlobals(ctx)
		switch {
		case err != nil && !failing:
			f.log.Warn("cannot refresh site settings; keeping the last ones", "err", err)
			failing = true
		case err == nil && failing:
			f.log.Info("site settings refresh works again")
			failing = false
		}
	}
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
