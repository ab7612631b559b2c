package main

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "1d12h": 36 * time.Hour, "36h": 36 * time.Hour,
		"90m": 90 * time.Minute, "45s": 45 * time.Second, "0.5d": 12 * time.Hour, " 2d ": 48 * time.Hour} {
		if got, err := parseAge(in); err != nil || got != want {
			t.Errorf("parseAge(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "0s", "soon", "3w", "1d-2h", "1dd"} {
		if got, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q) = %s, want an error", in, got)
		}
	}
}
