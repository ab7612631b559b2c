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

// globals is the cached site-wide state every message reads: the
// configuration in force, and the site settings (policy.Site: list sizes
// and policies, exempt senders, posters, mode) it and the store's settings
// make. It is replaced whole, never mutated, so readers need no lock; a
// message reads it once.
type globals struct {
	cfg  *Config       // the configuration in force (SetConfig replaces it)
	sg   store.Globals // the store's settings, as last read, to merge a reloaded config with
	site policy.Site   // what messages are decided under; site.Config is cfg.Policy

	loaded   bool           // read from the store at least once (else: the config file's only)
	err      string         // why the store could not be read, while never loaded
	invalid  map[string]int // the store's bad values, by key (store.Globals.Invalid)
	problems []store.Problem
}

// mergeGlobals combines the config file's lists and exempt senders with the
// store's; the store wins for a list both name. The store's mode wins over
// the configured one.
func mergeGlobals(cfg Config, sg store.Globals) *globals {
	g := &globals{cfg: &cfg, sg: sg, site: policy.Site{
		Config:  cfg.Policy,
		Mode:    cfg.Mode,
		Lists:   make(map[string]int, len(cfg.Lists)+len(sg.Lists)),
		Exempt:  policy.Senders{},
		Posters: policy.Senders{},

		SenderAuth: cfg.SenderAuth,
		Recipients: policy.Recipients{Delimiter: cfg.Recipients.Delimiter,
			LocalDomains: make([]string, len(cfg.Recipients.LocalDomains))},
	}}
	for i, d := range cfg.Recipients.LocalDomains {
		g.site.Recipients.LocalDomains[i] = strings.ToLower(strings.TrimSpace(d))
	}
	site := &g.site
	for addr, n := range cfg.Lists {
		site.Lists[strings.ToLower(addr)] = min(n, store.MaxListMembers)
	}
	for addr, n := range sg.Lists {
		site.Lists[strings.ToLower(addr)] = min(n, store.MaxListMembers)
	}
	if len(site.Recipients.LocalDomains) == 0 {
		site.Recipients.LocalDomains = listDomains(site.Lists)
	}
	g.invalid, g.problems = sg.Invalid, sg.Problems
	site.Exempt.Add(cfg.Exempt...)
	site.Exempt.Add(sg.Exempt...)
	site.Posters.Add(cfg.Posters...)
	site.Posters.Add(sg.Posters...)
	for addr, p := range cfg.ListPolicies {
		site.SetList(addr, p)
	}
	for addr, p := range sg.ListPolicies { // the store's replaces the config's, whole
		site.SetList(addr, p)
	}
	switch sg.Mode {
	case policy.ModeEnforce, policy.ModeMonitor, policy.ModeOff:
		site.Mode = sg.Mode
	}
	if site.Mode == "" {
		site.Mode = policy.ModeEnforce
	}
	return g
}

// maxListDomains bounds the domains a bare local name is tried in when
// policy.local_domains is unset.
const maxListDomains = 64

// listDomains are the domains of the registered lists, sorted, at most
// maxListDomains: where a bare local name (RCPT TO:<all-staff>) is looked
// for when policy.local_domains is unset, so that it counts as the list
// of that name.
func listDomains(lists map[string]int) []string {
	seen := map[string]bool{}
	for addr := range lists {
		if _, d, ok := strings.Cut(addr, "@"); ok && d != "" {
			seen[d] = true
		}
	}
	out := slices.Sorted(maps.Keys(seen))
	return out[:min(len(out), maxListDomains)]
}

// globalsDeadline bounds one whole refresh; each call inside it has its
// own, shorter deadline (redis.timeout), so a lists hash of any size loads.
const globalsDeadline = 2 * time.Minute

// warnEvery is how often a refresh failure that goes on is logged again.
const warnEvery = time.Minute

// RefreshGlobals re-reads the site-wide state from the store once. On error
// the previous state stays in force. Bad values the store reports are
// logged, each naming its key and field, on every refresh that finds them.
func (f *Filter) RefreshGlobals(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, globalsDeadline)
	defer cancel()
	sg, err := f.store.Globals(ctx)
	f.swap.Lock() // a reload (SetConfig) in between must not be undone
	defer f.swap.Unlock()
	if err != nil {
		f.Stats.GlobalsErrors.Add(1)
		if prev := f.globals.Load(); !prev.loaded {
			next := *prev // the config file's state, with why the store's is missing
			next.err = err.Error()
			f.globals.Store(&next)
		}
		return err
	}
	prev := f.globals.Load()
	next := mergeGlobals(*prev.cfg, sg)
	next.loaded = true
	f.globals.Store(next)
	if p, n := &prev.site, &next.site; !prev.loaded || p.Mode != n.Mode || !maps.Equal(p.Lists, n.Lists) || !maps.Equal(p.Exempt, n.Exempt) || !maps.Equal(p.Posters, n.Posters) || !samePolicies(p.Policies, n.Policies) {
		exempt := slices.Sorted(maps.Keys(n.Exempt))
		if len(exempt) > 20 {
			exempt = append(exempt[:20], "…")
		}
		f.log.Info("site settings loaded", "mode", n.Mode, "lists", len(n.Lists),
			"list_members", sumValues(n.Lists), "exempt", len(n.Exempt), "exempt_senders", exempt, "posters", len(n.Posters), "list_policies", len(n.Policies))
	}
	bad := 0
	for _, n := range sg.Invalid {
		bad += n
	}
	for _, p := range sg.Problems {
		f.log.Warn("bad site setting in the store", "key", p.Key, "field", p.Field, "value", p.Value, "problem", p.Why)
	}
	if bad > len(sg.Problems) {
		f.log.Warn("more bad site settings in the store", "not_shown", bad-len(sg.Problems), "by_key", sg.Invalid)
	}
	return nil
}

// GlobalsLoaded reports whether the site settings were ever read from the
// store, and if not, why (the last error).
func (f *Filter) GlobalsLoaded() (bool, string) {
	g := f.globals.Load()
	return g.loaded, g.err
}

// GlobalsInvalid reports the bad values found in the store by the last
// refresh that read it, by key.
func (f *Filter) GlobalsInvalid() map[string]int { return f.globals.Load().invalid }

// RunRefresher refreshes the globals every cfg.Refresh (or four times as
// long as the last refresh took, if that is longer) until ctx ends. A
// failure is logged when it starts, when its error changes, and every
// warnEvery while it lasts; a data error (a key of the wrong type) is
// logged as such, and limited apart from outages, so one never hides the
// other.
func (f *Filter) RunRefresher(ctx context.Context) {
	t := time.NewTimer(f.start.Refresh)
	defer t.Stop()
	type logged struct {
		err string
		at  time.Time
	}
	var last [2]logged // by kind: 0 outage, 1 data
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		err := f.RefreshGlobals(ctx)
		f.heartbeat(ctx)
		// A huge lists hash (seconds to read) is not re-read back to back.
		t.Reset(max(f.start.Refresh, 4*time.Since(start)))
		switch {
		case err != nil:
			failing = true
			kind := 0
			if store.IsDataError(err) {
				kind = 1
			}
			now := f.now()
			if l := last[kind]; l.err == err.Error() && now.Sub(l.at) < warnEvery {
				continue
			}
			last[kind] = logged{err.Error(), now}
			if kind == 1 {
				f.log.Error("site settings in the store are malformed; keeping the last ones until the key is fixed", "err", err)
			} else {
				f.log.Warn("cannot refresh site settings; keeping the last ones", "err", err)
			}
		case failing:
			f.log.Info("site settings refresh works again")
			failing = false
			last = [2]logged{}
		}
	}
}

func samePolicies(a, b map[string]policy.ListRules) bool {
	return maps.EqualFunc(a, b, func(x, y policy.ListRules) bool { return x.String() == y.String() })
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
