package packaging

import (
	"crypto/md5"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
)

// lintianWarnings are the lintian warnings the package keeps, with why.
// Any other warning, and any error, fails the test.
var lintianWarnings = map[string]string{
	// The binary is a static PIE (ASLR without a C library): lintian's
	// ELF check takes a position-independent file that needs no shared
	// library for a library missing its dependencies. The alternative, a
	// plain static Go binary, is an error (statically-linked-binary)
	// unless the source package build-depends on golang-go.
	"shared-library-lacks-prerequisites": "static-PIE Go binary",
	// stormguard-simulate(1): the --clients flag's default is one long
	// comma-separated word that groff cannot break to justify the line;
	// man shows it whole.
	"groff-message": "simulate's --clients default is one unbreakable word",
}

// TestDebianPackage builds the package twice (a lower version of the same
// tree first), checks it with lintian, installs the older one on this
// machine, changes its conffile, upgrades (dpkg keeps the change), runs
// `stormguard check`, verifies the unit, runs the unit's ExecStart line as
// the stormguard user and drives a storm through it over the milter
// protocol, upgrades again to a copy whose sample config changed too
// (--force-confold keeps the change, the new sample goes to .dpkg-dist),
// then removes and purges the package and checks that nothing of it is
// left.
//
// It needs root, dpkg, lintian and systemd-analyze, and refuses to run
// where a stormguard package or user already exists.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and installs the Debian package")
	}
	if os.Geteuid() != 0 {
		testenv.Require(t, "root", "the package test installs the .deb with dpkg -i; run as root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "lintian", "systemd-analyze", "setpriv", "git", "deb-systemd-helper"} {
		testenv.LookPath(t, tool, "apt-get install dpkg lintian systemd util-linux git init-system-helpers (./scripts/test.sh --setup)")
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		testenv.Require(t, "a host where systemd is not running",
			"with systemd as PID 1 the package's postinst would start stormguard.service on the packaged config's ports; run this test in a container or VM without systemd")
	}
	hostLock(t)
	if st := packageStatus(t); st != "" {
		t.Fatalf("dpkg knows a stormguard package here (%s); this test installs and purges its own and will not touch it", st)
	}
	if _, err := user.Lookup("stormguard"); err == nil {
		t.Fatal("a stormguard user exists without the package; this test will not touch it")
	}
	// `stormguard serve` run by hand as root (go run, the quick start)
	// makes /var/lib/stormguard/admin.token: kept aside while the package
	// owns the directory, and put back after the purge.
	for _, p := range []string{"/etc/stormguard", "/var/lib/stormguard"} {
		moveAside(t, p)
	}
	before := footprint(t)
	t.Logf("stormguard's footprint before the install (%d paths):\n%s", len(before), strings.Join(before, "\n"))

	dir := t.TempDir()
	deb := build(t, filepath.Join(dir, "new"), "")
	version := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version"))
	prev := build(t, filepath.Join(dir, "prev"), version+"~prev")

	lint(t, deb)
	run(t, "dpkg-deb", "--contents", deb)

	t.Cleanup(func() {
		if packageStatus(t) != "" {
			runErr(t, "dpkg", "--purge", "stormguard")
		}
	})

	// The previous build, as installed, then changed by the administrator.
	run(t, "dpkg", "-i", prev)
	checkInstalled(t, version+"~prev")
	run(t, "/usr/bin/stormguard", "check")
	const conf = "/etc/stormguard/stormguard.yaml"
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	changed := append(append([]byte{}, orig...), "\n# changed by the administrator\n"...)
	if err := os.WriteFile(conf, changed, 0o640); err != nil {
		t.Fatal(err)
	}

	// The upgrade keeps the changed conffile.
	run(t, "dpkg", "-i", deb)
	checkInstalled(t, version)
	if got, _ := os.ReadFile(conf); string(got) != string(changed) {
		t.Errorf("the upgrade replaced the changed %s:\n%s", conf, got)
	}
	for _, ext := range []string{".dpkg-dist", ".dpkg-new", ".dpkg-old"} {
		if _, err := os.Stat(conf + ext); err == nil {
			t.Errorf("the upgrade left %s%s", conf, ext)
		}
	}
	if out := run(t, "/usr/bin/stormguard", "version"); !strings.HasPrefix(out, "stormguard "+version+"\n") {
		t.Errorf("stormguard version after the upgrade: %q, want version %s", out, version)
	}
	if out := run(t, "/usr/bin/stormguard", "check"); !strings.Contains(out, "# config file "+conf+" is valid") {
		t.Errorf("stormguard check does not read %s:\n%s", conf, out)
	}

	t.Logf("stormguard's footprint installed:\n%s", strings.Join(footprint(t), "\n"))

	// The installed unit, verified offline; then a known-bad copy, so a
	// verify that finds nothing here is known to look.
	unit := "/lib/systemd/system/stormguard.service"
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	} else {
		t.Logf("$ systemd-analyze verify %s\n(no output, exit 0)", unit)
	}
	verifyCatches(t, unit)

	runUnitStorm(t, unit)

	// A later package whose sample config changed too: dpkg cannot merge
	// the two changes, and with --force-confold (as unattended upgrades
	// run it) keeps the administrator's file and puts the new sample
	// beside it.
	const later = "\n# a later sample\n"
	next := repack(t, deb, version+".next", func(sample []byte) []byte { return append(sample, later...) })
	run(t, "dpkg", "-i", "--force-confdef", "--force-confold", next)
	checkInstalled(t, version+".next")
	if got, _ := os.ReadFile(conf); string(got) != string(changed) {
		t.Errorf("the upgrade to a changed sample replaced the changed %s:\n%s", conf, got)
	}
	if got, err := os.ReadFile(conf + ".dpkg-dist"); err != nil || string(got) != string(orig)+later {
		t.Errorf("%s.dpkg-dist is not the new sample (%v):\n%s", conf, err, got)
	}

	// Remove keeps the config; purge leaves nothing.
	run(t, "dpkg", "-r", "stormguard")
	if st := packageStatus(t); !strings.HasPrefix(st, "rc") {
		t.Errorf("after dpkg -r: status %q, want rc (removed, config-files)", st)
	}
	if got, err := os.ReadFile(conf); err != nil || string(got) != string(changed) {
		t.Errorf("dpkg -r did not keep %s: %v", conf, err)
	}
	if _, err := os.Stat("/usr/bin/stormguard"); err == nil {
		t.Error("dpkg -r left /usr/bin/stormguard")
	}
	t.Logf("after dpkg -r:\n%s", strings.Join(footprint(t), "\n"))
	run(t, "dpkg", "--purge", "stormguard")
	after := footprint(t)
	t.Logf("stormguard's footprint after the purge (%d paths):\n%s", len(after), strings.Join(after, "\n"))
	if !reflect.DeepEqual(after, before) {
		t.Errorf("the purge left a different footprint:\nbefore %q\nafter  %q", before, after)
	}
	if st := packageStatus(t); st != "" {
		t.Errorf("after dpkg --purge dpkg still knows the package: %s", st)
	}
}

// build runs scripts/build-deb.sh into dir and returns the .deb's path;
// version, when set, overrides the one from git.
func build(t *testing.T, dir, version string) string {
	t.Helper()
	cmd := exec.Command("../scripts/build-deb.sh", dir)
	cmd.Env = os.Environ()
	if version != "" {
		cmd.Env = append(cmd.Env, "STORMGUARD_DEB_VERSION="+version)
	}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("scripts/build-deb.sh: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	deb := lines[len(lines)-1]
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("scripts/build-deb.sh printed %q, want the .deb's path", out)
	}
	return deb
}

// lint runs lintian and fails on errors and on warnings not in
// lintianWarnings.
func lint(t *testing.T, deb string) {
	t.Helper()
	out, _ := exec.Command("lintian", "--pedantic", "--display-info", deb).CombinedOutput()
	t.Logf("$ lintian --pedantic --display-info %s\n%s", filepath.Base(deb), out)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || len(f[0]) != 2 || f[0][1] != ':' {
			continue
		}
		switch f[0] {
		case "E:":
			t.Errorf("lintian error: %s", line)
		case "W:":
			if _, ok := lintianWarnings[f[2]]; !ok {
				t.Errorf("lintian warning not accepted in lintianWarnings: %s", line)
			}
		}
	}
}

// checkInstalled checks what postinst made: the package at version, the
// system user, its state directory and the conffile's owner and mode.
func checkInstalled(t *testing.T, version string) {
	t.Helper()
	if st := packageStatus(t); st != "ii "+version {
		t.Errorf("dpkg status %q, want %q", st, "ii "+version)
	}
	pw := strings.TrimSpace(run(t, "getent", "passwd", "stormguard"))
	f := strings.Split(pw, ":")
	if len(f) != 7 || f[5] != "/var/lib/stormguard" || f[6] != "/usr/sbin/nologin" {
		t.Errorf("stormguard user: %q, want home /var/lib/stormguard and shell /usr/sbin/nologin", pw)
	}
	if st := strings.TrimSpace(run(t, "stat", "-c", "%U:%G %a", "/var/lib/stormguard")); st != "stormguard:stormguard 700" {
		t.Errorf("/var/lib/stormguard: %s, want stormguard:stormguard 700", st)
	}
	if st := strings.TrimSpace(run(t, "stat", "-c", "%U:%G %a", "/etc/stormguard/stormguard.yaml")); st != "root:stormguard 640" {
		t.Errorf("/etc/stormguard/stormguard.yaml: %s, want root:stormguard 640", st)
	}
}

// verifyCatches: systemd-analyze verify reports a copy of unit with an
// unknown key and a missing binary.
func verifyCatches(t *testing.T, unit string) {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "ExecStart=/usr/bin/stormguard", "NoSuchKey=1\nExecStart=/usr/bin/stormguard-missing", 1)
	p := filepath.Join(t.TempDir(), "stormguard-bad.service")
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NoSuchKey") || !strings.Contains(string(out), "stormguard-missing") {
		t.Errorf("systemd-analyze verify does not catch a bad unit (%v):\n%s", err, out)
	}
}

// moveAside renames path, when it exists, to path.pkgtest-aside, and
// renames it back when the test ends (after the purge, which runs first).
func moveAside(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err != nil {
		return
	}
	aside := path + ".pkgtest-aside"
	if err := os.Rename(path, aside); err != nil {
		t.Fatalf("move %s aside: %v", path, err)
	}
	t.Logf("%s existed without the package: moved to %s until the test ends", path, aside)
	t.Cleanup(func() {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("%s exists after the purge; %s is left for an administrator", path, aside)
			return
		}
		if err := os.Rename(aside, path); err != nil {
			t.Errorf("put %s back: %v", path, err)
		}
	})
}

// repack returns a copy of deb at version with its sample config edited,
// as the next build would have it (the md5sums follow the edit).
func repack(t *testing.T, deb, version string, edit func([]byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	run(t, "dpkg-deb", "-R", deb, root)
	conf := filepath.Join(root, "etc/stormguard/stormguard.yaml")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	b = edit(b)
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	control := filepath.Join(root, "DEBIAN/control")
	c, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^Version: .*$`)
	if !re.Match(c) {
		t.Fatalf("%s: no Version field", control)
	}
	if err := os.WriteFile(control, re.ReplaceAll(c, []byte("Version: "+version)), 0o644); err != nil {
		t.Fatal(err)
	}
	sums := filepath.Join(root, "DEBIAN/md5sums")
	m, err := os.ReadFile(sums)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(m), "\n")
	for i, l := range lines {
		if strings.HasSuffix(l, "  etc/stormguard/stormguard.yaml") {
			lines[i] = fmt.Sprintf("%x  etc/stormguard/stormguard.yaml", md5.Sum(b))
		}
	}
	if err := os.WriteFile(sums, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "stormguard_"+version+".deb")
	run(t, "dpkg-deb", "--root-owner-group", "-b", root, out)
	return out
}
