package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The forms a list's policy is written in. Its settings are the same in
// each: min_audience, every limit rule's key (LimitRules: max_replies,
// delivery_budget; whole numbers from 0 to 2^53, 0 turning the rule off
// for the list), action (reject, tempfail, hold or monitor) and posters
// (senders, @domains or SASL logins).
//
//   - fields, as the config file's YAML mapping decodes:
//     {max_replies: 3, action: hold, posters: [comms@example.org]};
//   - JSON, as stormguard writes it in Redis and operators may with
//     redis-cli: {"max_replies":3,"action":"hold","posters":["comms@example.org"]};
//   - text, the older form still read: "max_replies=3;action=hold;posters=comms@example.org".

const (
	lpMinAudience = "min_audience"
	lpAction      = "action"
	lpPosters     = "posters"
)

// ListPolicyKeys are the settings a list's policy may carry, in the order
// String writes them.
func ListPolicyKeys() []string {
	return slices.Concat([]string{lpMinAudience}, LimitKeys(), []string{lpAction, lpPosters})
}

// ParseListPolicy reads a list's policy from a Redis value or the
// environment: a JSON object, or the text form (key=value pairs separated
// by ";", posters separated by ","). Space around keys and values is
// ignored; "" and "{}" are the zero policy. Every mistake is reported,
// each naming its key.
func ParseListPolicy(s string) (ListPolicy, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var fields map[string]any
		if err := d.Decode(&fields); err != nil {
			return ListPolicy{}, fmt.Errorf("not a JSON object of settings: %w", err)
		}
		if d.More() {
			return ListPolicy{}, errors.New("not one JSON object: text after it")
		}
		return ListPolicyFromFields(fields)
	}
	return parseListPolicyText(s)
}

// ListPolicyFromFields reads a list's policy from its settings by key, as
// a YAML or JSON decoder gives them: numbers as any integer type,
// json.Number or a whole float; posters as a list of strings (or one
// string of them separated by ","). Unknown keys are refused.
func ListPolicyFromFields(fields map[string]any) (ListPolicy, error) {
	var p ListPolicy
	var errs []error
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	}) {
		if err := p.set(strings.ToLower(strings.TrimSpace(k)), fields[k]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ListPolicy{}, err
	}
	return p, nil
}

// parseListPolicyText reads the text form.
func parseListPolicyText(s string) (ListPolicy, error) {
	var p ListPolicy
	var errs []error
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%q: want key=value", part))
		case seen[k]:
			errs = append(errs, fmt.Errorf("%s: given twice", k))
		default:
			seen[k] = true
			if err := p.set(k, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ListPolicy{}, err
	}
	return p, nil
}

// set reads setting k of value v into p.
func (p *ListPolicy) set(k string, v any) error {
	switch k {
	case lpMinAudience:
		n, err := limitValue(k, v)
		if err != nil {
			return err
		}
		if n > math.MaxInt32 {
			return fmt.Errorf("%s: %v is more than %d", k, v, math.MaxInt32)
		}
		p.MinAudience = Some(int(n))
	case lpAction:
		s, _ := v.(string)
		switch a := ConfigAction(strings.ToLower(strings.TrimSpace(s))); a {
		case ConfigReject, ConfigTempfail, ConfigHold, ConfigMonitor:
			p.Action = a
		default:
			return fmt.Errorf("action: %s is not reject, tempfail, hold or monitor", quoted(v))
		}
	case lpPosters:
		var list []string
		switch v := v.(type) {
		case string:
			list = strings.Split(v, ",")
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("posters: %s is not a sender, @domain or SASL login", quoted(e))
				}
				list = append(list, s)
			}
		case []string:
			list = v
		default:
			return fmt.Errorf("posters: %s is not a list of senders, @domains or SASL logins", quoted(v))
		}
		p.Posters = nil
		for _, a := range list {
			a = strings.ToLower(strings.TrimSpace(a))
			if a == "" || strings.ContainsAny(a, " \t\r\n\"';=") {
				return fmt.Errorf("posters: %q is not a sender, @domain or SASL login", a)
			}
			p.Posters = append(p.Posters, a)
		}
	default:
		r, ok := LimitRuleOf(k)
		if !ok {
			return fmt.Errorf("%q is not %s", k, orList(ListPolicyKeys()))
		}
		n, err := limitValue(k, v)
		if err != nil {
			return err
		}
		if p.Limits == nil {
			p.Limits = map[Rule]int64{}
		}
		p.Limits[r.Rule] = n
	}
	return nil
}

// limitValue reads a whole number from 0 to MaxLimit.
func limitValue(k string, v any) (int64, error) {
	var n int64
	ok := false
	switch v := v.(type) {
	case int:
		n, ok = int64(v), true
	case int64:
		n, ok = v, true
	case uint64:
		n, ok = int64(v), v <= MaxLimit
	case float64:
		n, ok = int64(v), v == math.Trunc(v) && math.Abs(v) <= MaxLimit
	case json.Number:
		var err error
		n, err = strconv.ParseInt(v.String(), 10, 64)
		ok = err == nil
	case string:
		var err error
		n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		ok = err == nil
	}
	if !ok || n < 0 || n > MaxLimit {
		return 0, fmt.Errorf("%s: %s is not a whole number from 0 to 2^53", k, quoted(v))
	}
	return n, nil
}

// quoted writes a value for an error: strings quoted, others as they are.
func quoted(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// orList writes a, b or c.
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// String is p as a JSON object, as ParseListPolicy reads it and
// stormguard writes it to Redis, its keys in ListPolicyKeys' order; "{}"
// for the zero policy.
func (p ListPolicy) String() string {
	var b bytes.Buffer
	b.WriteByte('{')
	field := func(k string, v []byte) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(k))
		b.WriteByte(':')
		b.Write(v)
	}
	if p.MinAudience.Set {
		field(lpMinAudience, strconv.AppendInt(nil, int64(p.MinAudience.V), 10))
	}
	for _, r := range LimitRules {
		if v, ok := p.Limits[r.Rule]; ok {
			field(r.Key, strconv.AppendInt(nil, v, 10))
		}
	}
	if p.Action != "" {
		field(lpAction, strconv.AppendQuote(nil, string(p.Action)))
	}
	if len(p.Posters) > 0 {
		list, _ := json.Marshal(p.Posters) // strings only: cannot fail
		field(lpPosters, list)
	}
	b.WriteByte('}')
	return b.String()
}

// Fields is p's settings by key, as ListPolicyFromFields reads them.
func (p ListPolicy) Fields() map[string]any {
	out := map[string]any{}
	if p.MinAudience.Set {
		out[lpMinAudience] = p.MinAudience.V
	}
	for r, v := range p.Limits {
		out[string(r)] = v
	}
	if p.Action != "" {
		out[lpAction] = string(p.Action)
	}
	if len(p.Posters) > 0 {
		out[lpPosters] = slices.Clone(p.Posters)
	}
	return out
}
