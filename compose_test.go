// Package stormguard_test checks the files at the top of the repository:
// docker-compose.yml and what it builds and mounts.
package stormguard_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// compose is the part of a Compose file that names files on the host.
type compose struct {
	Services map[string]struct {
		Build   build    `yaml:"build"`
		Volumes []string `yaml:"volumes"` // short syntax only: SRC:DST[:MODE]
		EnvFile []string `yaml:"env_file"`
	} `yaml:"services"`
}

// build is a service's build: the short form "DIR" or the long form with
// context and dockerfile.
type build struct {
	Context    string
	Dockerfile string
}

func (b *build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&b.Context)
	}
	var long struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	b.Context, b.Dockerfile = long.Context, long.Dockerfile
	return nil
}

// TestComposeFilesExist parses docker-compose.yml and checks that every
// build context, Dockerfile, mounted host path and env file it names exists,
// and every file those Dockerfiles COPY from their context.
func TestComposeFilesExist(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	built := 0
	for name, s := range c.Services {
		if s.Build.Context != "" {
			built++
			ctx := s.Build.Context
			mustExist(t, name+": build context", ctx, true)
			dockerfile := s.Build.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			df := filepath.Join(ctx, dockerfile)
			if mustExist(t, name+": dockerfile", df, false) {
				for _, src := range copySources(t, df) {
					mustExist(t, name+": "+dockerfile+" COPY", filepath.Join(ctx, src), false)
				}
			}
		}
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok || !(strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/")) {
				continue // a named volume, or an anonymous one
			}
			mustExist(t, name+": volume", src, false)
		}
		for _, f := range s.EnvFile {
			mustExist(t, name+": env_file", f, false)
		}
	}
	if built == 0 {
		t.Error("docker-compose.yml builds no service: expected stormguard and postfix")
	}
}

// mustExist reports whether path exists (as a directory if dir) and marks
// the test failed if not.
func mustExist(t *testing.T, what, path string, dir bool) bool {
	t.Helper()
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		t.Errorf("docker-compose.yml: %s %s: %v", what, path, err)
		return false
	case dir && !fi.IsDir():
		t.Errorf("docker-compose.yml: %s %s is not a directory", what, path)
		return false
	}
	return true
}

// copySources returns the context paths a Dockerfile COPYs or ADDs: every
// source of a COPY without --from, except "." and patterns.
func copySources(t *testing.T, dockerfile string) []string {
	t.Helper()
	raw, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || (!strings.EqualFold(fields[0], "COPY") && !strings.EqualFold(fields[0], "ADD")) {
			continue
		}
		args, fromStage := fields[1:], false
		for len(args) > 0 && strings.HasPrefix(args[0], "--") {
			fromStage = fromStage || strings.HasPrefix(args[0], "--from=")
			args = args[1:]
		}
		if fromStage || len(args) < 2 {
			continue
		}
		for _, src := range args[:len(args)-1] { // the last one is the destination
			if src == "." || strings.ContainsAny(src, "*?[") || strings.Contains(src, "://") {
				continue
			}
			srcs = append(srcs, src)
		}
	}
	return srcs
}
