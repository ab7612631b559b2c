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
)

var update = flag.Bool("update", false, "rewrite the README's generated config table")

// configTable renders the settings table the README shows.
func configTable() string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	for _, s := range settings {
		help := s.Help
		// The environment variable is STORMGUARD_ and the key, upper case,
		// "." as "_" (the README says so once); a key named otherwise says so.
		if env := "STORMGUARD_" + strings.ToUpper(strings.ReplaceAll(s.Key, ".", "_")); s.Env != env {
			help += " (environment: `" + s.Env + "`)"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", s.Key, formatDefault(s.Default), help)
	}
	return b.String()
}

func formatDefault(v any) string {
	switch d := v.(type) {
	case time.Duration:
		return d.String()
	case []string:
		return "[" + strings.Join(d, ", ") + "]"
	case map[string]int, map[string]string:
		return "{}"
	default:
		return fmt.Sprint(d)
	}
}

const (
	tableBegin = "<!-- config-table:begin (generated from cmd/stormguard/internal/config/config.go: go test ./cmd/stormguard/internal/config -run TestREADMEConfigTable -update) -->\n"
	tableEnd   = "<!-- config-table:end -->"
)

// TestREADMEConfigTable keeps the README's config table identical to the
// defaults the daemon really uses.
func TestREADMEConfigTable(t *testing.T) {
	path := "../../../../README.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	i := strings.Index(readme, tableBegin)
	j := strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no config table markers %q ... %q", tableBegin, tableEnd)
	}
	want := configTable()
	got := readme[i+len(tableBegin) : j]
	if got == want {
		return
	}
	if *update {
		readme = readme[:i+len(tableBegin)] + want + readme[j:]
		if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README config table is stale; run: go test ./cmd/stormguard/internal/config -run TestREADMEConfigTable -update\nwant:\n%s", want)
}

// TestSampleConfigMatchesDefaults proves deploy/stormguard.yaml names every
// key and holds exactly the defaults.
func TestSampleConfigMatchesDefaults(t *testing.T) {
	sample, v, err := loadConfig("../../../../deploy/stormguard.yaml", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !v.InConfig(s.Key) {
			t.Errorf("deploy/stormguard.yaml lacks %s", s.Key)
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
