package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stormguard/stormguard/policy"
)

// value is the field a key sets: read from the file's YAML node, or from
// the text of an environment variable or flag. An error says what the
// value is not ("\"ten\" is not a whole number"); the caller names the key.
type value interface {
	decode(n *yaml.Node) error
	parse(s string) error
	get() any       // the value, to compare (Reload)
	set(v any)      // sets what get returned
	String() string // as check prints it
}

// scalarType are the types of the keys set by one YAML scalar.
type scalarType interface {
	string | adminSetting | int | int64 | float64 | bool | time.Duration
}

// scalarValue is a key set by one YAML scalar; a time.Duration is written
// as Go writes durations (200ms, 60m, 6h).
type scalarValue[T scalarType] struct{ p *T }

func scalar[T scalarType](p *T) value { return scalarValue[T]{p} }

func (v scalarValue[T]) decode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s is not %s", nodeWords(n), v.words())
	}
	return v.parse(n.Value)
}

func (v scalarValue[T]) parse(s string) error {
	var err error
	switch p := any(v.p).(type) {
	case *time.Duration:
		*p, err = time.ParseDuration(strings.TrimSpace(s))
	case *int:
		*p, err = strconv.Atoi(strings.TrimSpace(s))
	case *int64:
		*p, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	case *float64:
		*p, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
	case *bool:
		*p, err = strconv.ParseBool(strings.TrimSpace(s))
	case *string:
		*p = s
	case *adminSetting:
		*p = adminSetting(s)
	}
	if err != nil {
		return fmt.Errorf("%s is not %s", quoteValue(s), v.words())
	}
	return nil
}

// words says what a value of T must be, as docs/configuration.md does.
func (v scalarValue[T]) words() string {
	switch any(v.p).(type) {
	case *time.Duration:
		return "a duration (200ms, 60m, 6h)"
	case *int, *int64:
		return "a whole number"
	case *float64:
		return "a number"
	case *bool:
		return "true or false"
	}
	return "a string"
}

func (v scalarValue[T]) get() any  { return *v.p }
func (v scalarValue[T]) set(x any) { *v.p = x.(T) }
func (v scalarValue[T]) String() string {
	if d, ok := any(*v.p).(time.Duration); ok {
		return d.String()
	}
	return fmt.Sprint(*v.p)
}

// limitValue is a limit rule's key: a whole number from 0 (the rule off)
// to 2^53, in policy.Limits.
type limitValue struct {
	r policy.LimitRule
	l *policy.Limits
}

func (v limitValue) decode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s is not a whole number", nodeWords(n))
	}
	return v.parse(n.Value)
}

func (v limitValue) parse(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not a whole number", quoteValue(s))
	}
	*v.l = v.r.With(*v.l, n) // range: policy.Config.Validate
	return nil
}

func (v limitValue) get() any       { return v.r.Limit(*v.l) }
func (v limitValue) set(x any)      { *v.l = v.r.With(*v.l, x.(int64)) }
func (v limitValue) String() string { return strconv.FormatInt(v.r.Limit(*v.l), 10) }

// listValue is a list of strings: a YAML sequence, or from the
// environment one string of them separated by ",". Empty is nil.
type listValue struct{ p *[]string }

func list(p *[]string) value { return listValue{p} }

func (v listValue) decode(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*v.p = nil
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("%s is not a list", nodeWords(n))
	}
	var out []string
	for _, e := range n.Content {
		if e.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s in the list is not a string", nodeWords(e))
		}
		out = append(out, e.Value)
	}
	*v.p = out
	return nil
}

func (v listValue) parse(s string) error {
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	*v.p = out
	return nil
}

func (v listValue) get() any       { return *v.p }
func (v listValue) set(x any)      { *v.p = x.([]string) }
func (v listValue) String() string { return "[" + strings.Join(*v.p, " ") + "]" }

// sizesValue is lists: list address -> member count, a YAML mapping, or
// from the environment "addr=count,addr=count". Addresses are lower case.
type sizesValue struct{ p *map[string]int }

func sizes(p *map[string]int) value { return sizesValue{p} }

func (v sizesValue) decode(n *yaml.Node) error {
	out := map[string]int{}
	err := eachEntry(n, func(addr string, e *yaml.Node) error {
		if e.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: %s is not a whole number", addr, nodeWords(e))
		}
		count, err := strconv.Atoi(strings.TrimSpace(e.Value))
		if err != nil {
			return fmt.Errorf("%s: %s is not a whole number", addr, quoteValue(e.Value))
		}
		out[addr] = count
		return nil
	})
	*v.p = nil
	if len(out) > 0 {
		*v.p = out
	}
	return err
}

func (v sizesValue) parse(s string) error {
	out := map[string]int{}
	for pair := range strings.SplitSeq(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		addr, n, ok := strings.Cut(pair, "=")
		count, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return fmt.Errorf("%q is not address=count", pair)
		}
		out[strings.ToLower(strings.TrimSpace(addr))] = count
	}
	*v.p = out
	return nil
}

func (v sizesValue) get() any       { return *v.p }
func (v sizesValue) set(x any)      { *v.p = x.(map[string]int) }
func (v sizesValue) String() string { return fmt.Sprint(*v.p) }

// policiesValue is list_policy: list address -> its own policy, a YAML
// mapping of sections (or of strings in the older text form); from the
// environment "addr=policy addr=policy", each policy a JSON object or
// the text form without spaces. Addresses are lower case.
type policiesValue struct {
	p *map[string]policy.ListPolicy
}

func policies(p *map[string]policy.ListPolicy) value { return policiesValue{p} }

func (v policiesValue) decode(n *yaml.Node) error {
	out := map[string]policy.ListPolicy{}
	err := eachEntry(n, func(addr string, e *yaml.Node) error {
		var p policy.ListPolicy
		var err error
		switch e.Kind {
		case yaml.ScalarNode:
			p, err = policy.ParseListPolicy(e.Value)
		case yaml.MappingNode:
			var fields map[string]any
			if err = e.Decode(&fields); err == nil {
				p, err = policy.ListPolicyFromFields(fields)
			}
		default:
			err = fmt.Errorf("%s is not a section of settings", nodeWords(e))
		}
		if err != nil {
			return fmt.Errorf("%s: %s", addr, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		out[addr] = p
		return nil
	})
	*v.p = nil
	if len(out) > 0 {
		*v.p = out
	}
	return err
}

func (v policiesValue) parse(s string) error {
	out := map[string]policy.ListPolicy{}
	for entry := range strings.FieldsSeq(s) {
		addr, text, ok := strings.Cut(entry, "=")
		if !ok || addr == "" {
			return fmt.Errorf("%q is not address=policy", entry)
		}
		addr = strings.ToLower(addr)
		p, err := policy.ParseListPolicy(text)
		if err != nil {
			return fmt.Errorf("%s: %s", addr, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		out[addr] = p
	}
	*v.p = out
	return nil
}

func (v policiesValue) get() any  { return *v.p }
func (v policiesValue) set(x any) { *v.p = x.(map[string]policy.ListPolicy) }
func (v policiesValue) String() string {
	var b []string
	for _, addr := range slices.Sorted(maps.Keys(*v.p)) {
		b = append(b, addr+": "+(*v.p)[addr].String())
	}
	return "{" + strings.Join(b, ", ") + "}"
}

// eachEntry calls f for each entry of a mapping keyed by list address
// (lower case, trimmed), in the file's order; an address given twice is
// an error.
func eachEntry(n *yaml.Node, f func(addr string, e *yaml.Node) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a section of list addresses", nodeWords(n))
	}
	seen := map[string]bool{}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		addr := strings.ToLower(strings.TrimSpace(n.Content[i].Value))
		if seen[addr] {
			errs = append(errs, fmt.Errorf("%s: given twice (line %d)", addr, n.Content[i].Line))
			continue
		}
		seen[addr] = true
		if err := f(addr, n.Content[i+1]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nodeWords names what a YAML node is, for an error.
func nodeWords(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section"
	case yaml.SequenceNode:
		return "a list"
	}
	return quoteValue(n.Value)
}

// quoteValue shows a value as it was written, quoted and cut short.
func quoteValue(s string) string {
	s = strconv.Quote(s)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return s
}

// parseNetwork reads a network (10.0.0.0/8) or one address (a /32 or
// /128).
func parseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}
