package milter

import (
	"errors"
	"maps"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// ErrHoldNeedsRestart is SetConfig's refusal of a configuration that holds
// messages when the filter was started with one that does not: the milter
// quarantine action is negotiated when a server is made, so the MTA's
// connections have not been offered it.
var ErrHoldNeedsRestart = errors.New("policy.action/gate.action: hold needs the milter quarantine action, negotiated at start; takes effect at restart")

// Holds reports whether c may hold a message (policy.action, a list
// policy's action, or an active gate.action is hold: the gate is active
// when gate.min_audience is on or a list names posters of its own), so
// the server must ask the MTA for the quarantine action. A list policy
// set in the store alone cannot ask for it: a message it would hold on a
// node started without hold is tempfailed (session.EndOfMessage), never
// let through.
func (c Config) Holds() bool {
	if c.Policy.Action == policy.ConfigHold {
		return true
	}
	gated := c.Policy.Gate.MinAudience > 0
	for _, p := range c.ListPolicies {
		if p.Action == policy.ConfigHold {
			return true
		}
		gated = gated || len(p.Posters) > 0
	}
	return gated && c.Policy.Gate.Action == policy.ConfigHold
}

// conf is the configuration in force.
func (f *Filter) conf() *Config { return f.globals.Load().cfg }

// Config returns the configuration in force: the one the filter was made
// with, or the last one SetConfig installed.
func (f *Filter) Config() Config { return *f.conf() }

// SetConfig puts c in force for the next message, without a lock on the
// message path: the configuration and the globals merged from it and the
// store's last settings are one snapshot, swapped whole. A message being
// decided finishes with the snapshot it read, texts and header included.
//
// c must validate. Its Refresh is not used (the refresher's period is the
// one the filter was made with), and it may hold only if the filter was
// made with a configuration that holds (ErrHoldNeedsRestart). The caller
// keeps what else needs a restart (StoreTimeout and Retention go with the
// store's own config) as it was.
func (f *Filter) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Holds() && !f.start.Holds() {
		return ErrHoldNeedsRestart
	}
	c.Lists = maps.Clone(c.Lists) // the snapshot is immutable; the caller's map is not
	f.swap.Lock()
	defer f.swap.Unlock()
	prev := f.globals.Load()
	next := mergeGlobals(c, prev.sg)
	next.loaded, next.err = prev.loaded, prev.err
	f.globals.Store(next)
	return nil
}

// BlockFor is how long a thread that storms stays blocked under the
// configuration d was decided by (policy.block_for), for its event.
func (d Decision) BlockFor() time.Duration {
	if d.conf == nil {
		return 0
	}
	return d.conf.Policy.Limits.BlockFor
}
