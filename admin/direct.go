package admin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stormguard/stormguard/events"
	"github.com/stormguard/stormguard/history"
	"github.com/stormguard/stormguard/internal/text"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// Config is what the admin work needs to know of the site's
// configuration.
type Config struct {
	Backend   string         // the store's name in answers: redis or memory
	Retention time.Duration  // how long threads are kept (store.retention), named when one is unknown
	Lists     map[string]int // the config file's list sizes
	Mode      string         // the config file's site mode
	Posters   []string       // the config file's allowed posters (gate.posters)
	// Policy is the site's policy and ListPolicies the config file's
	// list policies (list_policy), for the effective policy Lists shows.
	Policy       policy.Config
	ListPolicies map[string]policy.ListPolicy
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.Backend == "" {
		return errors.New("admin: no store backend named")
	}
	if c.Retention <= 0 {
		return fmt.Errorf("admin: retention must be positive, got %s", c.Retention)
	}
	return nil
}

// Store is what Direct needs of a store: both backends have it.
type Store interface {
	store.Store
	store.Admin
}

// Direct does the admin work on a store and its history.
type Direct struct {
	cfg Config
	st  Store
	h   history.Store
	// publish emits one event and returns a warning when it knows it was
	// not delivered everywhere.
	publish func(events.Event) (warning string)
	// changed, if set, is called after a site setting changed: the daemon
	// re-reads them at once, so the very next message sees the change.
	changed func(ctx context.Context)
}

var _ API = (*Direct)(nil)

// NewDirect does the admin work of cfg's site on st and its history h.
// publish emits an event and returns a warning when it knows the event was
// not delivered everywhere; changed, if not nil, is called after a site
// setting (lists, mode) changed.
func NewDirect(cfg Config, st Store, h history.Store, publish func(events.Event) (warning string), changed func(ctx context.Context)) (*Direct, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil || h == nil || publish == nil {
		return nil, errors.New("admin: NewDirect needs a store, its history and a publish function")
	}
	return &Direct{cfg: cfg, st: st, h: h, publish: publish, changed: changed}, nil
}

func (a *Direct) backend() string { return a.cfg.Backend }

func (a *Direct) settingsChanged(ctx context.Context) {
	if a.changed != nil {
		a.changed(ctx)
	}
}

func (a *Direct) Threads(ctx context.Context, limit int, all bool) ([]ThreadView, error) {
	if err := CheckLimit(limit); err != nil {
		return nil, err
	}
	now := time.Now()
	list := a.st.Storms // every thread that stormed or is overridden, however many quiet ones
	if all {
		list = a.st.Threads
	}
	infos, err := list(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	views := []ThreadView{}
	for _, info := range infos {
		if v := viewOf(info, now, false); all || v.isStorm() {
			views = append(views, v)
		}
	}
	return views, nil
}

// thread looks a thread up, turning ErrNotFound into the operator's error.
func (a *Direct) thread(ctx context.Context, t policy.ThreadID, now time.Time) (store.ThreadInfo, error) {
	info, err := a.st.Thread(ctx, t, now)
	if errors.Is(err, store.ErrNotFound) {
		return info, &Error{http.StatusNotFound, errUnknownThread(t, a.cfg.Retention).Error()}
	}
	return info, err
}

func (a *Direct) Thread(ctx context.Context, t policy.ThreadID) (ThreadView, error) {
	now := time.Now()
	info, err := a.thread(ctx, t, now)
	if err != nil {
		return ThreadView{}, err
	}
	return viewOf(info, now, true), nil
}

func (a *Direct) Override(ctx context.Context, t policy.ThreadID, verb string, dur time.Duration, by string) (OverrideResult, error) {
	switch verb {
	case string(policy.OverrideAllow), string(policy.OverrideBlock):
	case VerbReset, VerbNone:
		dur = 0
	default:
		return OverrideResult{}, badRequest("override %q: want allow, block, reset or none", verb)
	}
	if dur < 0 {
		return OverrideResult{}, badRequest("for %s: must be positive", dur)
	}
	info, err := a.thread(ctx, t, time.Now())
	if err != nil {
		return OverrideResult{}, err
	}
	switch verb {
	case VerbReset:
		err = a.st.Reset(ctx, t)
	case VerbNone:
		err = a.st.SetOverride(ctx, t, policy.OverrideNone, 0)
	default:
		err = a.st.SetOverride(ctx, t, policy.Override(verb), dur)
	}
	if err != nil {
		return OverrideResult{}, err
	}
	res := OverrideResult{Thread: string(t), Override: verb}
	if dur > 0 {
		exp := time.Now().Add(dur).UTC().Truncate(time.Second)
		res.Expires = &exp
	}
	res.Warning = a.publish(events.Event{Type: events.TypeOverride, Thread: string(t), Subject: info.Subject,
		OriginalSender: info.Sender, Override: verb, Expires: res.Expires, By: by})
	return res, nil
}

func (a *Direct) Lists(ctx context.Context) ([]ListView, error) {
	g, err := a.st.Globals(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, m := range []map[string]int{a.cfg.Lists, g.Lists} {
		for addr := range m {
			names[addr] = true
		}
	}
	for _, m := range []map[string]policy.ListPolicy{a.cfg.ListPolicies, g.ListPolicies} {
		for addr := range m {
			names[addr] = true
		}
	}
	out := []ListView{}
	for _, addr := range slices.Sorted(maps.Keys(names)) {
		out = append(out, a.listView(addr, g))
	}
	return out, nil
}

// listView is what is in force for addr: the store's size and policy
// (g), else the config's, and the effective policy of a message to it.
func (a *Direct) listView(addr string, g store.Globals) ListView {
	v := ListView{List: addr}
	if n, ok := g.Lists[addr]; ok {
		v.Members, v.From = n, a.backend()
	} else if n, ok := a.cfg.Lists[addr]; ok {
		v.Members, v.From = n, "config"
	}
	var own []policy.ListPolicy
	if p, ok := g.ListPolicies[addr]; ok {
		own, v.Policy, v.PolicyFrom, v.Posters = []policy.ListPolicy{p}, p.String(), a.backend(), p.Posters
	} else if p, ok := a.cfg.ListPolicies[addr]; ok && !p.IsZero() {
		own, v.Policy, v.PolicyFrom, v.Posters = []policy.ListPolicy{p}, p.String(), "config", p.Posters
	}
	c := policy.Effective(a.cfg.Policy, own)
	v.MinAudience, v.Action = c.MinAudience, string(c.Action)
	v.Limits = make(map[string]int64, len(policy.LimitRules))
	for _, r := range policy.LimitRules {
		v.Limits[r.Key] = r.Limit(c.Limits)
	}
	return v
}

func (a *Direct) SetListPolicy(ctx context.Context, addr, spec string) (ListView, error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if !strings.Contains(addr, "@") || strings.ContainsAny(addr, " \t\r\n") {
		return ListView{}, badRequest("list address %q: want local@domain", addr)
	}
	p, err := policy.ParseListPolicy(spec)
	if err != nil {
		return ListView{}, badRequest("list %s: policy: %s", addr, text.OneLine(err))
	}
	if err := a.st.SetListPolicy(ctx, addr, p); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return ListView{}, badRequest("%s", text.OneLine(err))
		}
		return ListView{}, err
	}
	a.settingsChanged(ctx)
	g, err := a.st.Globals(ctx)
	if err != nil {
		return ListView{}, err
	}
	return a.listView(addr, g), nil
}

func (a *Direct) SetList(ctx context.Context, addr string, members int) (ListView, error) {
	if err := CheckList(addr, members); err != nil {
		return ListView{}, err
	}
	if err := a.st.SetList(ctx, addr, members); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return ListView{}, badRequest("%s", text.OneLine(err))
		}
		return ListView{}, err
	}
	a.settingsChanged(ctx)
	return ListView{List: strings.ToLower(strings.TrimSpace(addr)), Members: members, From: a.backend()}, nil
}

func (a *Direct) DeleteList(ctx context.Context, addr string) (ListView, error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	g, err := a.st.Globals(ctx)
	if err != nil {
		return ListView{}, err
	}
	_, sized := g.Lists[addr]
	_, ruled := g.ListPolicies[addr]
	if !sized && !ruled {
		return ListView{}, notFound("list %s: not registered in the %s store", addr, a.backend())
	}
	if err := a.st.SetList(ctx, addr, 0); err != nil {
		return ListView{}, err
	}
	if err := a.st.SetListPolicy(ctx, addr, policy.ListPolicy{}); err != nil {
		return ListView{}, err
	}
	a.settingsChanged(ctx)
	return a.listView(addr, store.Globals{}), nil // what the config file still says
}

func (a *Direct) Mode(ctx context.Context) (ModeView, error) {
	g, err := a.st.Globals(ctx)
	if err != nil {
		return ModeView{}, err
	}
	if g.Mode == "" {
		return ModeView{Mode: a.cfg.Mode, From: "config"}, nil
	}
	return ModeView{Mode: string(g.Mode), From: a.backend()}, nil
}

func (a *Direct) SetMode(ctx context.Context, mode, by string) (ModeView, error) {
	m, err := ParseMode(mode)
	if err != nil {
		return ModeView{}, err
	}
	if err := a.st.SetMode(ctx, m); err != nil {
		return ModeView{}, err
	}
	a.settingsChanged(ctx)
	v := ModeView{Mode: string(m), From: a.backend()}
	if m == "" {
		v = ModeView{Mode: a.cfg.Mode, From: "config"}
	}
	v.Warning = a.publish(events.Event{Type: events.TypeMode, Mode: string(m), By: by})
	return v, nil
}
