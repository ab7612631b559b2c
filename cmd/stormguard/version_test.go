package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: `stormguard version` and `stormguard --version` print the
// same four lines, with the Go version this test was built with.
func TestVersion(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := execute(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		outs = append(outs, stdout.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("version and --version differ:\n%s\n%s", outs[0], outs[1])
	}
	lines := strings.Split(strings.TrimSuffix(outs[0], "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "stormguard ") ||
		!strings.HasPrefix(lines[1], "commit:") || !strings.HasPrefix(lines[2], "built:") ||
		lines[3] != "go version: "+runtime.Version() {
		t.Errorf("version output:\n%s", outs[0])
	}
}
