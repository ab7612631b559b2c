package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Source is one key as stormguard check prints it: its effective value and
// where that came from.
type Source struct {
	Key   string // policy.max_replies
	Value string // as loaded; a secret's is masked
	From  string // "env STORMGUARD_…", "file" or "default"
}

// Sources loads the configuration as Load does and lists every key, sorted
// by name, with its value and source. file is the config file read, or ""
// when there was none.
func Sources(path string, flags *pflag.FlagSet) (file string, keys []Source, err error) {
	_, v, err := loadConfig(path, path != "", flags)
	if err != nil {
		return "", nil, err
	}
	sorted := slices.SortedFunc(slices.Values(settings), func(a, b setting) int { return strings.Compare(a.Key, b.Key) })
	for _, s := range sorted {
		val := fmt.Sprint(v.Get(s.Key))
		if s.Secret && val != "" {
			val = "********"
		}
		keys = append(keys, Source{Key: s.Key, Value: val, From: source(v, s)})
	}
	return v.ConfigFileUsed(), keys, nil
}

func source(v *viper.Viper, s setting) string {
	if _, ok := os.LookupEnv(s.Env); ok {
		return "env " + s.Env
	}
	if v.ConfigFileUsed() != "" && v.InConfig(s.Key) {
		return "file"
	}
	return "default"
}
