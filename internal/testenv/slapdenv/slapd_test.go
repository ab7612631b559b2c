package slapdenv

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv"
)

// TestSlapd starts slapd with one entry and finds it with the real
// ldapsearch, as the reader and over ldaps with the test CA.
func TestSlapd(t *testing.T) {
	s := Start(t, Options{TLS: true, LDIF: "dn: cn=someone,dc=example,dc=org\nobjectClass: person\ncn: someone\nsn: one\n"})
	search := testenv.LookPath(t, "ldapsearch", installHint)
	for _, url := range []string{s.URL, s.LDAPSURL} {
		cmd := exec.Command(search, "-x", "-LLL", "-H", url, "-D", s.ReaderDN, "-w", s.ReaderPW, "-b", s.BaseDN, "(cn=someone)", "dn")
		cmd.Env = append(cmd.Environ(), "LDAPTLS_CACERT="+s.TLS.CAFile)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "dn: cn=someone,dc=example,dc=org") {
			t.Errorf("ldapsearch %s: %v\n%s", url, err, out)
		}
	}
}
