package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// setting is one key, as Config's tags declare it.
type setting struct {
	Key     string   // policy.max_replies
	Env     string   // STORMGUARD_POLICY_MAX_REPLIES
	Help    string   // what it means
	Default any      // of the field's type; strings as plain strings
	OneOf   []string // the values it may take, if the tag lists them
	Flag    string   // serve's flag, if any
	Secret  bool     // masked by check
	field   []int    // index path in Config
	to      [][]int  // index paths in plain
}

// settings are Config's keys in declaration order. A tag that cannot be
// read is a programming error and stops the program at start-up, so any
// test run finds it.
var settings = declaredSettings()

func declaredSettings() []setting {
	var out []setting
	walkKeys(reflect.TypeFor[Config](), "", nil, &out)
	defaults := reflect.ValueOf(defaultPlain())
	for i := range out {
		s := &out[i]
		f := reflect.TypeFor[Config]().FieldByIndex(s.field)
		var def reflect.Value
		switch tag, ok := f.Tag.Lookup("default"); {
		case ok:
			def = reflect.New(f.Type)
			if err := decodeInto(tag, def.Interface()); err != nil {
				panic(fmt.Sprintf("config key %s: default %q: %v", s.Key, tag, err))
			}
			def = def.Elem()
		case len(s.to) > 0:
			def = defaults.FieldByIndex(s.to[0]).Convert(f.Type)
		default:
			def = reflect.Zero(f.Type)
		}
		s.Default = plainDefault(def)
	}
	return out
}

// walkKeys appends the keys of the struct t, whose key prefix is prefix and
// whose index path in Config is index.
func walkKeys(t reflect.Type, prefix string, index []int, out *[]setting) {
	for i := range t.NumField() {
		f := t.Field(i)
		key := prefix + f.Tag.Get("mapstructure")
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			walkKeys(f.Type, key+".", idx, out)
			continue
		}
		s := setting{
			Key:    key,
			Env:    "STORMGUARD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_")),
			Help:   f.Tag.Get("help"),
			Flag:   f.Tag.Get("flag"),
			Secret: f.Tag.Get("secret") == "true",
			field:  idx,
		}
		if s.Help == "" || f.Tag.Get("mapstructure") == "" {
			panic("config field " + f.Name + ": no mapstructure or help tag")
		}
		if o := f.Tag.Get("oneof"); o != "" {
			s.OneOf = strings.Split(o, ",")
		}
		if to := f.Tag.Get("to"); to != "" {
			for _, path := range strings.Split(to, ",") {
				s.to = append(s.to, plainField(key, path, f.Type))
			}
		}
		*out = append(*out, s)
	}
}

// plainField resolves a to path ("Filter.Policy.Limits.Window") in plain,
// whose field must hold a value of type t.
func plainField(key, path string, t reflect.Type) []int {
	pt := reflect.TypeFor[plain]()
	var index []int
	for _, name := range strings.Split(path, ".") {
		f, ok := pt.FieldByName(name)
		if !ok || len(f.Index) != 1 {
			panic(fmt.Sprintf("config key %s: to %s: no field %s", key, path, name))
		}
		index = append(index, f.Index[0])
		pt = f.Type
	}
	if pt.Kind() != t.Kind() || !pt.ConvertibleTo(t) || !t.ConvertibleTo(pt) {
		panic(fmt.Sprintf("config key %s: to %s: a %s cannot hold a %s", key, path, pt, t))
	}
	return index
}

// plainDefault is a default as viper should hold it: strings as strings,
// an empty list or map rather than nil.
func plainDefault(v reflect.Value) any {
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Slice:
		if v.IsNil() {
			return reflect.MakeSlice(v.Type(), 0, 0).Interface()
		}
	case reflect.Map:
		if v.IsNil() {
			return reflect.MakeMap(v.Type()).Interface()
		}
	}
	return v.Interface()
}

// setPlain copies every key's value in c into the fields of p its to tag
// names.
func setPlain(c *Config, p *plain) {
	cv, pv := reflect.ValueOf(c).Elem(), reflect.ValueOf(p).Elem()
	for _, s := range settings {
		v := cv.FieldByIndex(s.field)
		for _, to := range s.to {
			dst := pv.FieldByIndex(to)
			dst.Set(v.Convert(dst.Type()))
		}
	}
}

// checkOneOf reports the first key whose value is not one its oneof tag lists.
func checkOneOf(c *Config) error {
	cv := reflect.ValueOf(c).Elem()
	for _, s := range settings {
		if s.OneOf == nil {
			continue
		}
		v := cv.FieldByIndex(s.field).String()
		if !slices.Contains(s.OneOf, v) {
			return fmt.Errorf("%s: %q is not %s", s.Key, v, orList(s.OneOf))
		}
	}
	return nil
}

// orList writes a, b or c.
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func newViper() *viper.Viper {
	v := viper.New()
	for _, s := range settings {
		v.SetDefault(s.Key, s.Default)
	}
	v.SetEnvPrefix("STORMGUARD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	return v
}

// AddFlags declares on fs the flags that set keys (their flag tags), for
// Load to read.
func AddFlags(fs *pflag.FlagSet) {
	for _, s := range settings {
		if s.Flag != "" {
			fs.String(s.Flag, "", s.Help)
		}
	}
}

// bindFlags lets the flags AddFlags declared on flags, where set,
// win over every other source.
func bindFlags(v *viper.Viper, flags *pflag.FlagSet) error {
	if flags == nil {
		return nil
	}
	for _, s := range settings {
		if f := flags.Lookup(s.Flag); s.Flag != "" && f != nil {
			if err := v.BindPFlag(s.Key, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// decoderOptions is how values from YAML, the environment, flags and
// default tags are read into Config: unknown keys are errors, and the
// hooks below read what YAML and the environment write as strings.
func decoderOptions(dc *mapstructure.DecoderConfig) {
	dc.ErrorUnused = true
	dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
		durationHook,
		mapstructure.StringToSliceHookFunc(","),
		listsHook,
		boolStringHook,
	)
}

// decodeInto reads in into out (a pointer) as loadConfig reads a key.
func decodeInto(in, out any) error {
	dc := &mapstructure.DecoderConfig{Result: out, WeaklyTypedInput: true}
	decoderOptions(dc)
	d, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return err
	}
	return d.Decode(in)
}

// listsHook accepts the lists setting as a map or, from the environment, as
// "addr=count,addr=count". Viper splits keys at dots, so a YAML map keyed by
// list addresses arrives nested ({"all-staff@example": {"org": 3000}}); the
// hook joins it back.
//
// It reads list_policy (address -> policy text) the same way; its
// environment form is "addr=policy" entries separated by spaces.
var listsHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(map[string]int{}) && to != reflect.TypeOf(map[string]string{}) {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		if to == reflect.TypeOf(map[string]string{}) {
			return parseListPolicyEnv(d)
		}
		return parseListsEnv(d)
	case map[string]any:
		out := map[string]any{}
		flattenLists("", d, out)
		return out, nil
	}
	return data, nil
}

// durationHook reads a duration from a string (60m, 6h, 200ms), and says
// which value it could not read (mapstructure's own hook drops it).
var durationHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || to != reflect.TypeFor[time.Duration]() {
		return data, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%s is not %s", quoteValue(s), typeWords(to))
	}
	return d, nil
}

// boolStringHook lets a YAML true or false set http.admin.
var boolStringHook mapstructure.DecodeHookFuncType = func(_, to reflect.Type, data any) (any, error) {
	if b, ok := data.(bool); ok && to == reflect.TypeFor[adminSetting]() {
		return strconv.FormatBool(b), nil
	}
	return data, nil
}

func flattenLists(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flattenLists(k, sub, out)
			continue
		}
		out[strings.ToLower(k)] = v
	}
}

func parseListPolicyEnv(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, entry := range strings.Fields(s) {
		addr, pol, ok := strings.Cut(entry, "=")
		if !ok || addr == "" {
			return nil, fmt.Errorf("list_policy: %q is not address=policy", entry)
		}
		out[strings.ToLower(addr)] = pol
	}
	return out, nil
}

func parseListsEnv(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		addr, n, ok := strings.Cut(pair, "=")
		count, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return nil, fmt.Errorf("lists: %q is not address=count", pair)
		}
		out[strings.ToLower(strings.TrimSpace(addr))] = count
	}
	return out, nil
}
