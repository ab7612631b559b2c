//go:build mandoc

// Built only with -tags mandoc, by scripts/build-deb.sh: run as
// `stormguard __man DIR`, that binary writes the man page of every command
// to DIR with cobra's doc generator and exits. The shipped binary is built
// without the tag and carries neither this nor the generator.

package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra/doc"
)

func init() {
	if len(os.Args) != 3 || os.Args[1] != "__man" {
		return
	}
	root := newRootCmd(os.Stdout, os.Stderr)
	root.DisableAutoGenTag = true
	root.InitDefaultCompletionCmd() // cobra adds it at Execute, after this runs
	// The page date is the build date the build script links in, so two
	// builds of one commit give the same pages.
	date := time.Now()
	if b := buildInfo(); b.Date != "unknown" {
		if t, err := time.Parse(time.RFC3339, b.Date); err == nil {
			date = t
		}
	}
	hdr := &doc.GenManHeader{Section: "1", Date: &date,
		Source: "stormguard " + root.Version, Manual: "stormguard manual"}
	if err := doc.GenManTree(root, hdr, os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "stormguard: man pages: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}
