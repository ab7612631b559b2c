package policy

// RuleOrder returns every Rule in the order Decide applies them: the first
// whose condition holds decides the verdict. The limit rules stand where
// Decide refuses a reply that crossed a limit, in LimitRules order (the
// order Crossed checks them). docs/design.md lists the rules in this
// order, and a test holds the two together and checks Decide against it.
func RuleOrder() []Rule {
	rules := []Rule{
		RuleModeOff,
		RuleExempt,
		RuleGate,
		RuleSmallAudience,
		RuleStoreError,
		RuleOverrideAllow,
		RuleOverrideBlock,
		RuleAutoReply,
		RuleOriginal,
		RuleDuplicate,
		RuleBlocked,
	}
	for _, r := range LimitRules {
		rules = append(rules, r.Rule)
	}
	return append(rules, RuleCounted)
}
