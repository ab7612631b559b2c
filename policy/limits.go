package policy

// The storm rule: which limit, if any, a reply crosses. This file is its
// one home. The memory store calls Crossed inside its atomic step;
// store/record.lua is its twin for Redis (a script cannot call Go), held
// to the same answers by store/storetest's LimitTable.
//
// A new limit rule is a Rule constant and a field of Limits (types.go), an
// entry in LimitRules, its lines in record.lua, its row in docs/design.md's
// rule table (rules_test.go holds the table to RuleOrder), and the tests
// that pin these (limits_test.go's example, store/script_test.go's
// arguments). Everything else that names a limit ranges over LimitRules:
// the config keys and their help, the list policy's settings and its
// merge (Effective), the lists command's flags and table, the admin
// views, logs, metrics, events and the simulator; the generated config
// reference and sample config are rewritten by
// go test ./cmd/stormguard/internal/config -update.

// Window is what a thread's sliding window holds just before a reply is
// counted: the replies counted in it and the sum of their audiences.
type Window struct {
	Count     int
	Delivered int64
}

// LimitRule describes one limit on a thread's window. Everything that
// names the limits (Crossed, Config.Validate, Decide, metrics, events,
// the simulator, docs) ranges over LimitRules instead of listing them.
type LimitRule struct {
	Rule Rule   // what a crossing reports: Tally.Crossed, Verdict.Rule, logs, metrics, events
	Key  string // its setting under "policy." (policy.max_replies)
	Help string // one line for config docs; says that 0 disables the rule
	Unit string // what it counts, plural: "replies", "mailboxes"
	// Limit is the rule's value in l; With is l with the rule's value v.
	// 0 disables the rule.
	Limit func(l Limits) int64
	With  func(l Limits, v int64) Limits
	// Held is what the window holds, in Unit; Adds is what a reply
	// reaching audience mailboxes adds to it when counted. The reply
	// crosses the limit when Held + Adds would pass it.
	Held func(w Window) int64
	Adds func(audience int) int64
}

// LimitRules are the limit rules in the order Crossed checks them: when a
// reply crosses several, the first one is reported.
var LimitRules = []LimitRule{
	{
		Rule:  RuleMaxReplies,
		Key:   "max_replies",
		Help:  "large-audience replies allowed per thread per window (0 disables the rule)",
		Unit:  "replies",
		Limit: func(l Limits) int64 { return int64(l.MaxReplies) },
		With:  func(l Limits, v int64) Limits { l.MaxReplies = int(v); return l },
		Held:  func(w Window) int64 { return int64(w.Count) },
		Adds:  func(int) int64 { return 1 },
	},
	{
		Rule:  RuleDeliveryBudget,
		Key:   "delivery_budget",
		Help:  "sum of audiences of the replies allowed per thread per window (0 disables the rule)",
		Unit:  "mailboxes",
		Limit: func(l Limits) int64 { return l.DeliveryBudget },
		With:  func(l Limits, v int64) Limits { l.DeliveryBudget = v; return l },
		Held:  func(w Window) int64 { return w.Delivered },
		Adds:  func(audience int) int64 { return int64(audience) },
	},
}

// LimitRuleOf returns the limit rule whose Rule or Key is name.
func LimitRuleOf(name string) (LimitRule, bool) {
	for _, r := range LimitRules {
		if string(r.Rule) == name || r.Key == name {
			return r, true
		}
	}
	return LimitRule{}, false
}

// LimitKeys is the limit rules' keys, "max_replies, delivery_budget".
func LimitKeys() []string {
	keys := make([]string, len(LimitRules))
	for i, r := range LimitRules {
		keys[i] = r.Key
	}
	return keys
}

// MaxLimit is the largest value a limit may take: 2^53, the largest
// integer up to which every integer is exact in Redis' Lua numbers
// (doubles), so that record.lua and Crossed agree on every allowed limit.
const MaxLimit = 1 << 53

// Crossed returns the rule a reply reaching audience mailboxes crosses when
// its thread's window already holds w, or "" when it may be counted. A
// limit of 0 disables its rule; a reply crosses a limit when, counted, the
// window would hold more than the limit (reaching it exactly is allowed).
func Crossed(l Limits, w Window, audience int) Rule {
	for _, r := range LimitRules {
		// held + adds > limit, written so that nothing can overflow
		// (limit > 0 and adds >= 0 for any reply a store accepts).
		if limit := r.Limit(l); limit > 0 && r.Held(w) > limit-r.Adds(audience) {
			return r.Rule
		}
	}
	return ""
}

// IsLimit reports whether r is one of LimitRules: a storm.
func IsLimit(r Rule) bool {
	for _, lr := range LimitRules {
		if lr.Rule == r {
			return true
		}
	}
	return false
}
