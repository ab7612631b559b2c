package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/internal/testenv/slapdenv"
)

// syncMaps builds an alias and a virtual map with the real postalias and
// postmap and returns the listsync YAML that reads them: staff has 4
// members, everyone 6 (staff, erin, a pipe), all@example.net 7.
func syncMaps(t *testing.T) string {
	t.Helper()
	hint := "install postfix (apt-get install postfix)"
	postalias, postmap := testenv.LookPath(t, "postalias", hint), testenv.LookPath(t, "postmap", hint)
	dir := t.TempDir()
	files := map[string]string{
		"main.cf": "",
		"aliases": "staff: alice, bob, carol, dave\neveryone: staff, erin, \"|/usr/bin/archive\"\nsolo: frank\n",
		// A key with a terminal escape is skipped, never printed.
		"virtual": "all@example.net everyone@example.org, zoe@example.net\nx\x1b]0;pwned\x07@example.net a@example.net, b@example.net\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for tool, file := range map[string]string{postalias: "aliases", postmap: "virtual"} {
		if out, err := exec.Command(tool, "-c", dir, "hash:"+filepath.Join(dir, file)).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tool, err, out)
		}
	}
	return fmt.Sprintf("  postfix_config_dir: %s\n  alias_maps: [hash:%s/aliases]\n  alias_domains: [example.org]\n  virtual_maps: [hash:%s/virtual]\n", dir, dir, dir)
}

func TestListsSyncCommand(t *testing.T) {
	rd := redisenv.Start(t)
	base := fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\nlistsync:\n%s", rd, syncMaps(t))
	cfg := writeConfig(t, base)
	mustRun(t, "lists", "set", "staff@example.org", "2", "--config", cfg)
	mustRun(t, "lists", "set", "by-hand@example.org", "7", "--config", cfg)
	hget := func(l string) string { return redisenv.CLI(t, rd, "HGET", "stormguard:lists", l) }

	out := mustRun(t, "lists", "sync", "--dry-run", "--config", cfg)
	flat := strings.Join(strings.Fields(out), " ")
	for _, w := range []string{"LIST OLD NEW", "all@example.net - 7", "everyone@example.org - 6", "staff@example.org 2 4",
		"3 lists from postfix maps", "3 changed, 0 unchanged, 1 below listsync.min_members (not written), 1 in the store from elsewhere (kept), 1 unreadable values skipped",
		"dry run: nothing written"} {
		if !strings.Contains(flat, w) {
			t.Errorf("lists sync --dry-run lacks %q:\n%s", w, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("output carries a terminal escape: %q", out)
	}
	if got := hget("staff@example.org"); got != "2" {
		t.Errorf("after --dry-run staff@ = %q, want 2", got)
	}

	out = mustRun(t, "lists", "sync", "--config", cfg)
	if !strings.Contains(out, "3 written; every node uses it within") {
		t.Errorf("lists sync:\n%s", out)
	}
	for l, want := range map[string]string{"staff@example.org": "4", "everyone@example.org": "6", "all@example.net": "7", "by-hand@example.org": "7", "solo@example.org": ""} {
		if got := hget(l); got != want {
			t.Errorf("after lists sync %s = %q, want %q", l, got, want)
		}
	}
	if out := mustRun(t, "lists", "sync", "--config", cfg); !strings.Contains(out, "0 changed, 3 unchanged") || strings.Contains(out, "LIST") {
		t.Errorf("second lists sync:\n%s", out)
	}

	// LDAP unreachable: one line naming the source and why, exit 1,
	// nothing written (the maps' lists were not touched either).
	mustRun(t, "lists", "set", "staff@example.org", "3", "--config", cfg)
	url := fmt.Sprintf("ldap://127.0.0.1:%d", testenv.FreePort(t))
	bad := writeConfig(t, base+"  ldap:\n    url: "+url+"\n    base_dn: dc=example,dc=org\n")
	code, out, errb := run(t, "lists", "sync", "--config", bad)
	if code == 0 || out != "" || strings.Count(errb, "\n") != 1 ||
		!strings.Contains(errb, "stormguard: list sync from ldap "+url+" failed: cannot connect: ") ||
		!strings.Contains(errb, "connection refused; nothing written, the previous list sizes stay") {
		t.Errorf("lists sync with LDAP down: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	if got := hget("staff@example.org"); got != "3" {
		t.Errorf("after a failed sync staff@ = %q, want 3 (kept)", got)
	}

	if code, _, errb := run(t, "lists", "sync", "--config", writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\n", rd))); code == 0 ||
		!strings.Contains(errb, "nothing to read: set listsync.ldap.url") {
		t.Errorf("lists sync with no source: exit %d %q", code, errb)
	}
}

// TestServeSyncsLists: serve with listsync.every syncs at start and on its
// period; with LDAP down it logs one clear line per attempt, counts the
// failure and keeps the sizes.
func TestServeSyncsLists(t *testing.T) {
	maps := syncMaps(t)
	d := startDaemonHTTP(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "", "store:\n  backend: memory\nlistsync:\n  every: 100ms\n"+maps)
	d.log.wait(t, 0, "lists synced", "lists=3", "changed=3")
	cfg := writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+d.http+"\n")
	if out := strings.Join(strings.Fields(mustRun(t, "lists", "--config", cfg)), " "); !strings.Contains(out, "staff@example.org 4 memory") ||
		!strings.Contains(out, "all@example.net 7 memory") {
		t.Errorf("lists after serve's sync:\n%s", out)
	}
	d.log.wait(t, 0, "lists synced", "changed=0", "unchanged=3")

	url := fmt.Sprintf("ldap://127.0.0.1:%d", testenv.FreePort(t))
	down := startDaemonHTTP(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "",
		"store:\n  backend: memory\nlistsync:\n  every: 100ms\n  ldap:\n    url: "+url+"\n    base_dn: dc=example,dc=org\n"+maps)
	cfg = writeConfig(t, "store:\n  backend: memory\nhttp:\n  listen: "+down.http+"\n")
	mustRun(t, "lists", "set", "staff@example.org", "2", "--config", cfg)
	from := down.log.len()
	i := down.log.wait(t, from, "list sync failed: nothing written, the previous list sizes stay", "source=\"ldap "+url+"\"", "connection refused")
	down.log.wait(t, i+1, "list sync failed") // and again on the next period
	if out := strings.Join(strings.Fields(mustRun(t, "lists", "--config", cfg)), " "); !strings.Contains(out, "staff@example.org 2 memory") ||
		strings.Contains(out, "all@example.net") {
		t.Errorf("lists after failed syncs:\n%s", out)
	}
	if strings.Contains(down.log.String(), "lists synced") {
		t.Errorf("a sync succeeded with LDAP down:\n%s", down.log.String())
	}
	if m := scrape(t, down); m["stormguard_listsync_failures_total"] < 2 || m["stormguard_listsync_last_success_timestamp_seconds"] != 0 {
		t.Errorf("metrics: failures %v, last success %v", m["stormguard_listsync_failures_total"], m["stormguard_listsync_last_success_timestamp_seconds"])
	}
	if m := scrape(t, d); m["stormguard_listsync_last_success_timestamp_seconds"] == 0 {
		t.Errorf("last success not set after a sync")
	}
}

// TestListsSyncFromLDAP: lists sync through the config keys against a
// real slapd over StartTLS, as a reader with a password file, into Redis.
func TestListsSyncFromLDAP(t *testing.T) {
	const g = "ou=groups,dc=example,dc=org"
	var ldif strings.Builder
	ldif.WriteString("dn: " + g + "\nobjectClass: organizationalUnit\nou: groups\n\n")
	for i := range 1200 {
		fmt.Fprintf(&ldif, "dn: uid=u%d,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: u%d\ncn: u%d\nsn: u%d\n\n", i, i, i, i)
	}
	member := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "member: uid=u%d,dc=example,dc=org\n", i)
		}
		return b.String()
	}
	fmt.Fprintf(&ldif, "dn: cn=eng,%s\nobjectClass: groupOfNames\ncn: eng\n%s\n", g, member(0, 700))
	fmt.Fprintf(&ldif, "dn: cn=sales,%s\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: sales\nmail: sales@example.org\n%s\n", g, member(600, 1000))
	fmt.Fprintf(&ldif, "dn: cn=all,%s\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: all\nmail: All@Example.org\nmember: cn=eng,%s\nmember: cn=sales,%s\n%s\n", g, g, g, member(1100, 1200))
	s := slapdenv.Start(t, slapdenv.Options{TLS: true, LDIF: ldif.String()})
	pw := filepath.Join(t.TempDir(), "ldap.password")
	if err := os.WriteFile(pw, []byte(s.ReaderPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rd := redisenv.Start(t)
	cfg := writeConfig(t, fmt.Sprintf("store:\n  backend: redis\nredis:\n  addrs: [%s]\nlistsync:\n  ldap:\n    url: %s\n    starttls: true\n    ca_file: %s\n    bind_dn: %s\n    password_file: %s\n    base_dn: %s\n",
		rd, s.URL, s.TLS.CAFile, s.ReaderDN, pw, s.BaseDN))
	out := mustRun(t, "lists", "sync", "--config", cfg)
	if !strings.Contains(out, "2 written") {
		t.Errorf("lists sync:\n%s", out)
	}
	// all: eng (0-699) and sales (600-999) overlap by 100: 1,000, and 100 more.
	for l, want := range map[string]string{"all@example.org": "1100", "sales@example.org": "400"} {
		if got := redisenv.CLI(t, rd, "HGET", "stormguard:lists", l); got != want {
			t.Errorf("%s = %q, want %s", l, got, want)
		}
	}
	if got := redisenv.CLI(t, rd, "HLEN", "stormguard:lists"); got != "2" {
		t.Errorf("HLEN = %s, want 2 (eng has no address)", got)
	}
}
