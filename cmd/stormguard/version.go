package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// commit and buildDate are set with version by the package build
// (scripts/build-deb.sh): -ldflags "-X main.version=… -X main.commit=…
// -X main.buildDate=…". A plain go build leaves them empty and buildInfo
// takes them from the VCS stamp Go embeds.
var commit, buildDate string

// build says what is running.
type build struct {
	Version, Commit, Date, Go string
}

func (b build) String() string {
	return fmt.Sprintf("stormguard %s\ncommit:     %s\nbuilt:      %s\ngo version: %s\n", b.Version, b.Commit, b.Date, b.Go)
}

// buildInfo combines the values set at link time with the build info Go
// embeds: the module version (a tag or pseudo-version when built from a
// git checkout by go build), vcs.revision with "-dirty" when the tree had
// changes, vcs.time. What neither gives is "unknown".
func buildInfo() build {
	b := build{Version: version, Commit: commit, Date: buildDate, Go: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if ok {
		b.Go = info.GoVersion
		if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		var rev, at string
		dirty := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.Commit == "" && rev != "" {
			b.Commit = rev
			if dirty {
				b.Commit += "-dirty"
			}
		}
		if b.Date == "" && at != "" {
			b.Date = at + " (commit time)"
		}
	}
	for _, s := range []*string{&b.Commit, &b.Date} {
		if *s == "" {
			*s = "unknown"
		}
	}
	return b
}

// newVersionCmd is `stormguard version`; it also makes root's --version
// print the same text.
func newVersionCmd(root *cobra.Command, stdout io.Writer) *cobra.Command {
	b := buildInfo()
	root.Version = b.Version
	root.SetVersionTemplate(b.String())
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := io.WriteString(stdout, b.String())
			return err
		},
	}
}
