package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// describeDecodeError turns what the config decoder reports into one line
// an administrator can act on, naming every key at fault:
//
//	policy.max_replies: "ten" is not a whole number; unknown key polcy
//
// instead of mapstructure's "decoding failed due to the following
// error(s): 'policy.max_replies' cannot parse value as 'int': …".
func describeDecodeError(err error) string {
	var parts, unknown []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if de, ok := e.(*mapstructure.DecodeError); ok {
			var inner *mapstructure.DecodeError
			if _, joined := de.Unwrap().(interface{ Unwrap() []error }); joined || errors.As(de.Unwrap(), &inner) {
				walk(de.Unwrap()) // the keys inside it name themselves
			} else if keys := unknownKeys(de); keys != nil {
				unknown = append(unknown, keys...)
			} else {
				parts = append(parts, describeKey(de))
			}
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
			return
		}
		parts = append(parts, e.Error())
	}
	walk(err)
	if len(unknown) > 0 {
		slices.Sort(unknown)
		word := "unknown key "
		if len(unknown) > 1 {
			word = "unknown keys "
		}
		parts = append(parts, word+strings.Join(unknown, ", ")+" (stormguard check lists every key)")
	}
	return strings.Join(parts, "; ")
}

// unknownKeys returns the keys a "has invalid keys" error names, with
// their section, or nil for any other error.
func unknownKeys(de *mapstructure.DecodeError) []string {
	rest, ok := strings.CutPrefix(de.Unwrap().Error(), "has invalid keys: ")
	if !ok {
		return nil
	}
	keys := strings.Split(rest, ", ")
	for i, k := range keys {
		if de.Name() != "" {
			keys[i] = de.Name() + "." + k
		}
	}
	return keys
}

// describeKey is one key's error.
func describeKey(de *mapstructure.DecodeError) string {
	name, inner := de.Name(), de.Unwrap()
	if name == "" {
		name = "config"
	}
	var pe *mapstructure.ParseError
	if errors.As(inner, &pe) {
		return fmt.Sprintf("%s: %s is not %s", name, quoteValue(pe.Value), typeWords(pe.Expected.Type()))
	}
	var ue *mapstructure.UnconvertibleTypeError
	if errors.As(inner, &ue) {
		return fmt.Sprintf("%s: %s is not %s", name, quoteValue(ue.Value), typeWords(ue.Expected.Type()))
	}
	return name + ": " + inner.Error()
}

// typeWords names what a setting of type t must be, as docs/configuration.md does.
func typeWords(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration (200ms, 60m, 6h)"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a section of keys"
	}
	return "a " + t.String()
}

// quoteValue shows a value as it was written, cut short.
func quoteValue(v any) string {
	s := fmt.Sprint(v)
	if _, ok := v.(string); ok || v == nil {
		s = fmt.Sprintf("%q", s)
	}
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return strings.Join(strings.Fields(s), " ")
}
