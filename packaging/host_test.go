package packaging

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// run runs a command, logs it with its output, and fails the test when it
// exits non-zero. It returns the standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// runErr is run without the failure: the caller judges the error.
func runErr(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("$ %s %s\n%s%s", name, strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String(), err
}

// hostLock serializes the tests that install the package: two test runs on
// one machine would install and purge the same package. The lock is
// released when the test ends (or its process dies).
func hostLock(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/run/lock/stormguard-package-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

// footprint lists what of stormguard is on this machine: every path under
// the directories a package, its scripts, deb-systemd-helper and the daemon
// write to whose name holds "stormguard", and the stormguard entries of the
// user and group databases. /var/cache is left out: the test suite keeps
// its own unpacked Sendmail in /var/cache/stormguard-test.
func footprint(t *testing.T) []string {
	t.Helper()
	var found []string
	for _, root := range []string{"/etc", "/lib/systemd", "/usr", "/var/lib", "/var/log", "/run/stormguard", "/opt"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) || os.IsPermission(err) {
					return nil
				}
				return err
			}
			if strings.Contains(d.Name(), "stormguard") {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("footprint: %v", err)
		}
	}
	for _, db := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
		b, err := os.ReadFile(db)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "stormguard:") {
				found = append(found, db+": "+strings.SplitN(line, ":", 2)[0])
			}
		}
	}
	sort.Strings(found)
	return found
}

// packageStatus is dpkg's status of the stormguard package, "" when dpkg
// does not know it.
func packageStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "stormguard").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
