package stormguard_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/policy"
)

// designRules returns the rule names of docs/design.md's table under "The
// rules, in order", top to bottom.
func designRules(t *testing.T) []policy.Rule {
	t.Helper()
	raw, err := os.ReadFile("docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## The rules, in order\n")
	if !ok {
		t.Fatal(`docs/design.md has no section "## The rules, in order"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rules []policy.Rule
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		rules = append(rules, policy.Rule(strings.Trim(cell, "`")))
	}
	return rules
}

// TestDesignRuleOrder ties docs/design.md's list of rules to
// policy.RuleOrder: the same rules, in the same order.
func TestDesignRuleOrder(t *testing.T) {
	if got, want := designRules(t), policy.RuleOrder(); !slices.Equal(got, want) {
		t.Errorf("docs/design.md lists the rules\n%v\npolicy.RuleOrder (the order Decide applies them) is\n%v", got, want)
	}
}

// policyFiles parses policy's non-test Go files.
func policyFiles(t *testing.T) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob("policy/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// ruleConstants returns the constants of type policy.Rule declared in
// policy, name -> value.
func ruleConstants(t *testing.T) map[string]policy.Rule {
	t.Helper()
	consts := map[string]policy.Rule{}
	for _, f := range policyFiles(t) {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Rule" {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Fatalf("policy: Rule constant %s is not a string literal", name.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					consts[name.Name] = policy.Rule(v)
				}
			}
		}
	}
	if len(consts) == 0 {
		t.Fatal("policy declares no constants of type Rule")
	}
	return consts
}

// TestRuleOrderHoldsEveryRule checks that policy.RuleOrder names every
// Rule constant policy declares, once.
func TestRuleOrderHoldsEveryRule(t *testing.T) {
	order := policy.RuleOrder()
	for name, r := range ruleConstants(t) {
		if n := strings.Count(","+joinRules(order)+",", ","+string(r)+","); n != 1 {
			t.Errorf("policy.RuleOrder holds %s (%q) %d times, want once", name, r, n)
		}
	}
	if n := len(ruleConstants(t)); len(order) != n {
		t.Errorf("policy.RuleOrder holds %d rules, policy declares %d", len(order), n)
	}
}

func joinRules(rs []policy.Rule) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// TestDecideSourceOrder reads policy/decide.go: the rules that known's
// body and then Decide's name (Decide asks known first), in the order
// they first appear, must come in RuleOrder's order. (The gate's and the
// limit rules' names reach Decide through gate and Tally.Crossed;
// TestDecideAppliesRuleOrder places them.)
func TestDecideSourceOrder(t *testing.T) {
	consts := ruleConstants(t)
	funcs := map[string]*ast.FuncDecl{}
	for _, f := range policyFiles(t) {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && (fd.Name.Name == "Decide" || fd.Name.Name == "known") {
				funcs[fd.Name.Name] = fd
			}
		}
	}
	if funcs["Decide"] == nil || funcs["known"] == nil {
		t.Fatal("policy has no func Decide or known")
	}
	var named []policy.Rule
	inspect := func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok {
			if r, ok := consts[id.Name]; ok && !slices.Contains(named, r) {
				named = append(named, r)
			}
		}
		return true
	}
	ast.Inspect(funcs["known"].Body, inspect)
	ast.Inspect(funcs["Decide"].Body, inspect)
	var want []policy.Rule
	for _, r := range policy.RuleOrder() {
		if slices.Contains(named, r) {
			want = append(want, r)
		}
	}
	if len(named) < 5 || !slices.Equal(named, want) {
		t.Errorf("Decide names the rules in the order\n%v\npolicy.RuleOrder has them as\n%v", named, want)
	}
}

// TestDecideAppliesRuleOrder checks the order by what Decide does: over a
// grid of facts and tallies, its rule is the first in RuleOrder whose
// condition (written here from the table in docs/design.md) holds.
func TestDecideAppliesRuleOrder(t *testing.T) {
	cond := map[policy.Rule]func(c policy.Config, f policy.Facts, t *policy.Tally) bool{
		policy.RuleModeOff: func(_ policy.Config, f policy.Facts, _ *policy.Tally) bool { return f.Mode == policy.ModeOff },
		policy.RuleExempt:  func(_ policy.Config, f policy.Facts, _ *policy.Tally) bool { return f.Exempt },
		policy.RuleGate: func(c policy.Config, f policy.Facts, _ *policy.Tally) bool {
			return f.ListGated || c.Gate.MinAudience > 0 && f.Audience >= c.Gate.MinAudience && !f.Poster
		},
		policy.RuleSmallAudience: func(c policy.Config, f policy.Facts, _ *policy.Tally) bool {
			return f.Audience < c.MinAudience && !(f.AutoReply && f.Audience > c.AutoReplyMaxAudience)
		},
		policy.RuleStoreError:    func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t == nil }, // the store failed: Answer.Failed
		policy.RuleOverrideAllow: func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t.Override == policy.OverrideAllow },
		policy.RuleOverrideBlock: func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t.Override == policy.OverrideBlock },
		policy.RuleAutoReply:     func(_ policy.Config, f policy.Facts, _ *policy.Tally) bool { return f.AutoReply },
		policy.RuleOriginal:      func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t.Status == policy.StatusNoted },
		policy.RuleDuplicate:     func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t.Status == policy.StatusDuplicate },
		policy.RuleBlocked:       func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t.Status == policy.StatusBlocked },
		policy.RuleCounted:       func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool { return t.Status == policy.StatusCounted },
	}
	tallies := []*policy.Tally{nil}
	statuses := []policy.Tally{
		{Status: policy.StatusNoted}, {Status: policy.StatusDuplicate},
		{Status: policy.StatusBlocked}, {Status: policy.StatusCounted},
	}
	for _, lr := range policy.LimitRules {
		cond[lr.Rule] = func(_ policy.Config, _ policy.Facts, t *policy.Tally) bool {
			return t.Status == policy.StatusCrossed && t.Crossed == lr.Rule
		}
		statuses = append(statuses, policy.Tally{Status: policy.StatusCrossed, Crossed: lr.Rule})
	}
	for _, o := range []policy.Override{policy.OverrideNone, policy.OverrideAllow, policy.OverrideBlock} {
		for _, s := range statuses {
			s.Override = o
			tallies = append(tallies, &s)
		}
	}
	order := policy.RuleOrder()
	for _, r := range order {
		if cond[r] == nil {
			t.Fatalf("no condition for rule %s: add it here and to docs/design.md", r)
		}
	}
	seen := map[policy.Rule]bool{}
	cases := 0
	for _, gateMin := range []int{0, 5000} {
		c := policy.Defaults()
		c.Gate.MinAudience = gateMin
		for _, mode := range []policy.Mode{policy.ModeEnforce, policy.ModeMonitor, policy.ModeOff} {
			for _, audience := range []int{50, 500, 3000, 6000} {
				for bits := range 16 {
					f := policy.Facts{
						Mode: mode, Audience: audience,
						Exempt: bits&1 != 0, Poster: bits&2 != 0, ListGated: bits&4 != 0, AutoReply: bits&8 != 0,
					}
					f.Reply = !f.AutoReply
					for _, tally := range tallies {
						// The conditions after store_error read the
						// tally; store_error stops a nil one first.
						want := policy.Rule("")
						for _, r := range order {
							if cond[r](c, f, tally) {
								want = r
								break
							}
						}
						a := policy.Answer{Failed: policy.FailOpen}
						if tally != nil {
							a = policy.Answer{Tally: *tally}
						}
						got := policy.Decide(c, f, a).Rule
						cases++
						seen[got] = true
						if got != want {
							t.Fatalf("Decide(%+v, %+v, %+v) = %s; the first rule of RuleOrder that applies is %s", c, f, tally, got, want)
						}
					}
				}
			}
		}
	}
	for _, r := range order {
		if !seen[r] {
			t.Errorf("no case of the grid reached rule %s", r)
		}
	}
	t.Logf("%d cases", cases)
}
