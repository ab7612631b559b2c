package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
)

var update = flag.Bool("update", false, "rewrite the generated config reference, docs/configuration.md")

// configTable renders the reference table docs/configuration.md shows:
// every key, its default and its meaning.
func configTable() string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	d := defaults()
	for _, k := range keys {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", k.name, formatDefault(k.val(&d).get()), k.help)
	}
	return b.String()
}

func formatDefault(v any) string {
	switch d := v.(type) {
	case time.Duration:
		return d.String()
	case []string:
		return "[" + strings.Join(d, ", ") + "]"
	case map[string]int, map[string]policy.ListPolicy:
		return "{}"
	default:
		return fmt.Sprint(d)
	}
}

const (
	referencePath = "../../../../docs/configuration.md"
	readmePath    = "../../../../README.md"
	tableBegin    = "<!-- config-table:begin (generated from cmd/stormguard/internal/config/config.go: go test ./cmd/stormguard/internal/config -update) -->\n"
	tableEnd      = "<!-- config-table:end -->"
	keysBegin     = "<!-- config-keys:begin (the keys people change; each row's key and default as in docs/configuration.md) -->\n"
	keysEnd       = "<!-- config-keys:end -->"
)

// between returns the text of s between the markers begin and end.
func between(t *testing.T, name, s, begin, end string) (text string, i, j int) {
	t.Helper()
	i = strings.Index(s, begin)
	j = strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no markers %q ... %q", name, begin, end)
	}
	return s[i+len(begin) : j], i + len(begin), j
}

// TestConfigReference keeps docs/configuration.md's table identical to the
// keys and defaults the daemon really uses.
func TestConfigReference(t *testing.T) {
	keepGenerated(t, referencePath, tableBegin, tableEnd, configTable())
}

// keepGenerated checks that the text of the file at path between the
// markers begin and end is want, and with -update writes it there.
func keepGenerated(t *testing.T, path, begin, end, want string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	got, i, j := between(t, path, page, begin, end)
	switch {
	case got == want:
	case *update:
		if err := os.WriteFile(path, []byte(page[:i]+want+page[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		t.Errorf("%s is stale between %q and %q; run: go test ./cmd/stormguard/internal/config -update\nwant:\n%s", path, begin, end, want)
	}
}

// tableRows returns a Markdown table's rows as key -> default, the first
// two cells with their backquotes removed, in order.
func tableRows(table string) (keys []string, defaults map[string]string) {
	defaults = map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 3 || !strings.HasPrefix(line, "| `") {
			continue
		}
		key := strings.Trim(strings.TrimPrefix(cells[0], "| "), "`")
		keys = append(keys, key)
		defaults[key] = strings.Trim(cells[1], "`")
	}
	return keys, defaults
}

// TestREADMEKeys checks the README's short table of the keys people change
// against the reference: ten keys, each a real key with its real default.
func TestREADMEKeys(t *testing.T) {
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	short, _, _ := between(t, "README.md", string(raw), keysBegin, keysEnd)
	keys, defaults := tableRows(short)
	if len(keys) != 10 {
		t.Errorf("README.md's short config table has %d keys %v, want the ten people change", len(keys), keys)
	}
	_, want := tableRows(configTable())
	for _, k := range keys {
		d, ok := want[k]
		switch {
		case !ok:
			t.Errorf("README.md names key %s, which is not a key (docs/configuration.md)", k)
		case defaults[k] != d:
			t.Errorf("README.md gives %s the default %q; it is %q (docs/configuration.md)", k, defaults[k], d)
		}
	}
}

const (
	samplePath  = "../../../../deploy/stormguard.yaml"
	limitsBegin = "  # limits:begin (generated from policy.LimitRules: go test ./cmd/stormguard/internal/config -update)\n"
	limitsEnd   = "  # limits:end"
)

// TestSampleLimits keeps deploy/stormguard.yaml's limit lines those of
// policy.LimitRules, each at its default with its help.
func TestSampleLimits(t *testing.T) {
	var b strings.Builder
	site := policy.Defaults().Limits
	for _, r := range policy.LimitRules {
		fmt.Fprintf(&b, "  %-27s # %s\n", fmt.Sprintf("%s: %d", r.Key, r.Limit(site)), r.Help)
	}
	keepGenerated(t, samplePath, limitsBegin, limitsEnd, b.String())
}

// TestSampleConfigMatchesDefaults proves deploy/stormguard.yaml names every
// key and holds exactly the defaults.
func TestSampleConfigMatchesDefaults(t *testing.T) {
	sample, src, err := loadConfig(samplePath, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if src.from[k.name] != "file" {
			t.Errorf("deploy/stormguard.yaml lacks %s", k.name)
		}
	}
	defaults, _, err := loadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sample, defaults) {
		t.Errorf("deploy/stormguard.yaml differs from the defaults:\nsample   %+v\ndefaults %+v", *sample, *defaults)
	}
}
