package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Load reads the defaults, the config file at path (DefaultFile if path
// is empty and that file exists), the STORMGUARD_* environment variables
// and the flags AddFlags declared on flags (nil for none), each over the
// one before, and validates the result. Its errors are one line naming
// every key at fault.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	cfg, _, err := loadConfig(path, path != "", flags)
	return cfg, err
}

// loaded says where each key's value came from.
type loaded struct {
	file string            // the config file read; "" for none
	from map[string]string // key -> "file", "env STORMGUARD_…" or "flag --…"; absent: the default
}

// loadConfig is Load, also saying where each value came from; with
// explicit false, a missing file at path is no error.
func loadConfig(path string, explicit bool, flags *pflag.FlagSet) (*Config, *loaded, error) {
	cfg := defaults()
	src := &loaded{from: map[string]string{}}
	if path == "" {
		path = DefaultFile
	}
	if _, err := os.Stat(path); err == nil || explicit {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("config %s: %w", path, err)
		}
		if err := decodeFile(&cfg, raw, src); err != nil {
			return nil, nil, fmt.Errorf("config %s: %s", path, oneLine(err))
		}
		src.file = path
	}
	var errs []error
	for _, k := range keys {
		s := os.Getenv(k.env())
		if s == "" { // unset or empty: the file's or the default
			continue
		}
		if err := k.val(&cfg).parse(s); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", k.name, k.env(), err))
			continue
		}
		src.from[k.name] = "env " + k.env()
	}
	for _, k := range keys {
		if flags == nil || k.flag == "" {
			continue
		}
		if f := flags.Lookup(k.flag); f != nil && f.Changed {
			if err := k.val(&cfg).parse(f.Value.String()); err != nil {
				errs = append(errs, fmt.Errorf("%s (--%s): %w", k.name, k.flag, err))
				continue
			}
			src.from[k.name] = "flag --" + k.flag
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("config: %s", oneLine(err))
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, src, nil
}

// decodeFile reads a configuration file's YAML into c, strictly: a key
// that is not one of keys, a key given twice, or a value that is not what
// its key takes is an error naming the key and its line. The keys it sets
// are noted in src.
func decodeFile(c *Config, raw []byte, src *loaded) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, errEOF) || len(bytes.TrimSpace(raw)) == 0 {
			return nil // an empty file sets nothing
		}
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	var errs, unknown []string
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode {
			name := strings.TrimSuffix(prefix, ".")
			if name == "" {
				name = "config"
			}
			errs = append(errs, fmt.Sprintf("%s (line %d): %s is not a section of keys", name, n.Line, nodeWords(n)))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			name := prefix + kn.Value
			switch k, ok := keyNamed(name); {
			case seen[name]:
				errs = append(errs, fmt.Sprintf("%s (line %d): given twice", name, kn.Line))
			case ok:
				if err := k.val(c).decode(vn); err != nil {
					errs = append(errs, fmt.Sprintf("%s (line %d): %s", name, vn.Line, oneLine(err)))
				}
				src.from[name] = "file"
			case isSection(name):
				walk(name+".", vn)
			default:
				unknown = append(unknown, name)
			}
			seen[name] = true
		}
	}
	walk("", root)
	if len(unknown) > 0 {
		word := "unknown key "
		if len(unknown) > 1 {
			word = "unknown keys "
		}
		errs = append(errs, word+strings.Join(unknown, ", ")+" (stormguard check lists every key)")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// errEOF is what the YAML decoder returns for a file without a document.
var errEOF = func() error {
	var n yaml.Node
	return yaml.NewDecoder(bytes.NewReader(nil)).Decode(&n)
}()

// oneLine is err's text on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// Source is one key as stormguard check prints it: its effective value and
// where that came from.
type Source struct {
	Key   string // policy.max_replies
	Value string // as loaded; a secret's is masked
	From  string // "flag --…", "env STORMGUARD_…", "file" or "default"
}

// Sources loads the configuration as Load does and lists every key, sorted
// by name, with its value and source. file is the config file read, or ""
// when there was none.
func Sources(path string, flags *pflag.FlagSet) (file string, out []Source, err error) {
	cfg, src, err := loadConfig(path, path != "", flags)
	if err != nil {
		return "", nil, err
	}
	sorted := slices.SortedFunc(slices.Values(keys), func(a, b key) int { return strings.Compare(a.name, b.name) })
	for _, k := range sorted {
		val := k.val(cfg).String()
		if k.secret && val != "" {
			val = "********"
		}
		from := src.from[k.name]
		if from == "" {
			from = "default"
		}
		out = append(out, Source{Key: k.name, Value: val, From: from})
	}
	return src.file, out, nil
}
