package listsync_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/listsync"
)

// postfixMaps writes alias and virtual files in a temporary directory with
// an empty main.cf and builds them with the real postalias and postmap.
func postfixMaps(t *testing.T, aliases, virtual string) (dir string) {
	t.Helper()
	postalias := testenv.LookPath(t, "postalias", "install postfix (apt-get install postfix)")
	postmap := testenv.LookPath(t, "postmap", "install postfix (apt-get install postfix)")
	dir = t.TempDir()
	for name, body := range map[string]string{"main.cf": "", "aliases": aliases, "virtual": virtual} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for tool, file := range map[string]string{postalias: "aliases", postmap: "virtual"} {
		if out, err := exec.Command(tool, "-c", dir, "hash:"+filepath.Join(dir, file)).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tool, err, out)
		}
	}
	return dir
}

func TestMaps(t *testing.T) {
	include := filepath.Join(t.TempDir(), "board.list")
	if err := os.WriteFile(include, []byte("# the board\nceo@example.org, cfo\n\"quoted, person\"@example.net\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aliases := `# nested aliases, shared members, a cycle, pipes, files, an include
postmaster: root
root: admin
staff: alice, bob,
  carol, Dave@Example.ORG
everyone: staff, ops, alice, "|/usr/bin/archive --list everyone", /var/mail/everyone.archive
ops: bob, erin, \ops
loop1: loop2, x1
loop2: loop1, x2
board: :include:` + include + `
solo: frank
`
	virtual := `example.net  anything
@example.net catchall@example.org
all@example.net  everyone@example.org, staff@example.org, zoe@example.net
team@example.net dev@example.net, qa@example.net
dev@example.net  d1@example.net, d2@example.net, team@example.net
qa@example.net   d2@example.net, q1@example.net
bad@example.net  ok@example.net, bad@@example.net
`
	dir := postfixMaps(t, aliases, virtual)
	c := listsync.Defaults()
	c.PostfixConfigDir = dir
	c.AliasMaps = []string{"hash:" + filepath.Join(dir, "aliases")}
	c.AliasDomains = []string{"example.org", "lists.example.org"}
	c.VirtualMaps = []string{"hash:" + filepath.Join(dir, "virtual")}
	res, err := collect(t, c)
	if err != nil {
		t.Fatal(err)
	}
	w := map[string]int{
		// staff: alice, bob, carol, dave (Dave@Example.ORG is dave).
		"staff@example.org": 4, "staff@lists.example.org": 4,
		// everyone: staff's four, erin, the mailbox ops, the pipe, the file.
		"everyone@example.org": 8, "everyone@lists.example.org": 8,
		"ops@example.org": 3, "ops@lists.example.org": 3,
		"loop1@example.org": 2, "loop1@lists.example.org": 2, // x1, x2
		"loop2@example.org": 2, "loop2@lists.example.org": 2,
		"board@example.org": 3, "board@lists.example.org": 3, // ceo, cfo, the quoted one
		// all: everyone's eight and zoe.
		"all@example.net":  9,
		"team@example.net": 3, "dev@example.net": 3, // d1, d2, q1 through the cycle
		"qa@example.net": 2,
	}
	diff(t, res.Sizes, w)
	st := res.Stats[c.Sources()[0].Name()]
	if st.Skipped != 1 { // bad@@example.net
		t.Errorf("Skipped = %d, want 1", st.Skipped)
	}
	// root, postmaster, solo (one member each) and bad@ (one readable).
	if res.Below != 2*3+1 {
		t.Errorf("Below = %d, want 7", res.Below)
	}

	t.Run("a missing map fails the source", func(t *testing.T) {
		c := c
		c.VirtualMaps = []string{"hash:" + filepath.Join(dir, "nonexistent")}
		res, err := collect(t, c)
		if err == nil || res.Sizes != nil || !strings.Contains(err.Error(), "postmap -s hash:"+filepath.Join(dir, "nonexistent")+": postmap: fatal: open database") {
			t.Errorf("Collect = %v, %v", res.Sizes, err)
		}
	})
	t.Run("a missing include fails the source", func(t *testing.T) {
		os.Remove(include)
		_, err := collect(t, c)
		if err == nil || !strings.Contains(err.Error(), ":include:"+include) {
			t.Errorf("err = %v", err)
		}
	})
}
