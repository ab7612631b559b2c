package listsync_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/slapdenv"
	"github.com/stormguard/stormguard/listsync"
)

const (
	people = "ou=people,dc=example,dc=org"
	groups = "ou=groups,dc=example,dc=org"
)

func user(i int) string { return fmt.Sprintf("uid=u%d,%s", i, people) }

// directory is an LDIF with 20,000 people, a group of all of them, nested
// groups with shared members and a cycle, a posixGroup, an AD-style group,
// a groupOfUniqueNames and 1,000 small groups (more than the reader's
// size limit of 500 entries, so only a paged search finds them all).
func directory() string {
	var b strings.Builder
	b.WriteString("dn: " + people + "\nobjectClass: organizationalUnit\nou: people\n\n")
	b.WriteString("dn: " + groups + "\nobjectClass: organizationalUnit\nou: groups\n\n")
	for i := range 20000 {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: inetOrgPerson\nuid: u%d\ncn: User %d\nsn: %d\nmail: u%d@example.org\n\n", user(i), i, i, i, i)
	}
	gon := func(cn, mail string, members ...string) {
		fmt.Fprintf(&b, "dn: cn=%s,%s\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: %s\n", cn, groups, cn)
		if mail != "" {
			fmt.Fprintf(&b, "mail: %s\n", mail)
		}
		for _, m := range members {
			fmt.Fprintf(&b, "member: %s\n", m)
		}
		b.WriteString("\n")
	}
	g := func(cn string) string { return "cn=" + cn + "," + groups }
	all := make([]string, 20000)
	for i := range all {
		all[i] = user(i)
	}
	gon("all-staff", "all-staff@example.org", all...)
	// A holds B and C, which share u3 and u4; B has no address.
	gon("b", "", user(2), user(3), user(4))
	gon("c", "c@example.org", user(3), user(4), user(5))
	gon("a", "a@example.org", g("b"), g("c"), user(1), user(1)+" ") // the same member twice, once with a space
	// D and E hold each other.
	gon("d", "d@example.org", g("e"), user(10), user(11))
	gon("e", "e@example.org", g("d"), user(11), user(12))
	// A posixGroup, whose members are uids (one with no entry), nested in
	// a groupOfNames that also names one of them by DN.
	b.WriteString("dn: cn=posix," + groups + "\nobjectClass: posixGroup\nobjectClass: extensibleObject\ncn: posix\ngidNumber: 1000\nmail: posix@example.org\nmemberUid: u20\nmemberUid: u21\nmemberUid: u22\nmemberUid: ghost\n\n")
	gon("mixed", "mixed@example.org", g("posix"), user(20))
	// Active Directory's shape: objectClass group, member, a mail in
	// mixed case.
	fmt.Fprintf(&b, "dn: cn=ad,%s\nobjectClass: group\ncn: ad\nmail: AD-List@Example.ORG\nmember: %s\nmember: %s\nmember: %s\n\n", groups, user(30), user(31), g("d"))
	fmt.Fprintf(&b, "dn: cn=uniq,%s\nobjectClass: groupOfUniqueNames\nobjectClass: extensibleObject\ncn: uniq\nmail: uniq@example.org\nuniqueMember: %s\nuniqueMember: %s#'0101'B\n\n", groups, user(40), user(41))
	gon("solo", "solo@example.org", user(50)) // one member: below min_members
	for i := range 1000 {
		gon(fmt.Sprintf("small%d", i), fmt.Sprintf("small%d@example.org", i), user(100+2*i), user(101+2*i))
	}
	return b.String()
}

func want() map[string]int {
	w := map[string]int{
		"all-staff@example.org": 20000,
		"a@example.org":         5, // u1 (twice), u2, u3, u4, u5
		"c@example.org":         3,
		"d@example.org":         3, // u10, u11, u12 through the cycle
		"e@example.org":         3,
		"posix@example.org":     4, // u20, u21, u22, ghost
		"mixed@example.org":     4, // the same four: u20 once
		"ad-list@example.org":   5, // u30, u31 and d's three
		"uniq@example.org":      2,
	}
	for i := range 1000 {
		w[fmt.Sprintf("small%d@example.org", i)] = 2
	}
	return w
}

// passwordFile writes pw to a file and returns its path.
func passwordFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ldap.password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ldapCfg(t *testing.T, s *slapdenv.Server) listsync.Config {
	c := listsync.Defaults()
	c.LDAP.URL = s.URL
	c.LDAP.BindDN, c.LDAP.PasswordFile = s.ReaderDN, passwordFile(t, s.ReaderPW)
	c.LDAP.BaseDN = s.BaseDN
	c.Timeout = time.Minute
	return c
}

func collect(t *testing.T, c listsync.Config) (listsync.Result, error) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return listsync.Collect(context.Background(), c, c.Sources())
}

func diff(t *testing.T, got, want map[string]int) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: %d members, want %d", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %d members, want none (not a list)", k, got[k])
		}
	}
}

func TestLDAP(t *testing.T) {
	s := slapdenv.Start(t, slapdenv.Options{LDIF: directory()})

	t.Run("exact counts", func(t *testing.T) {
		start := time.Now()
		res, err := collect(t, ldapCfg(t, s))
		if err != nil {
			t.Fatal(err)
		}
		diff(t, res.Sizes, want())
		if res.Below != 1 {
			t.Errorf("Below = %d, want 1 (solo@)", res.Below)
		}
		t.Logf("%d lists in %s", len(res.Sizes), time.Since(start).Round(time.Millisecond))
	})

	t.Run("the reader needs paging", func(t *testing.T) {
		// Proves the counts above came through RFC 2696 pages: the
		// same search unpaged stops at the reader's 500 entries.
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Bind(s.ReaderDN, s.ReaderPW); err != nil {
			t.Fatal(err)
		}
		_, err = conn.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			listsync.DefaultLDAPFilter, []string{"cn"}, nil))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			t.Errorf("unpaged search as the reader: %v, want size limit exceeded", err)
		}
	})

	t.Run("filter and mail attribute", func(t *testing.T) {
		c := ldapCfg(t, s)
		c.LDAP.Filter = "(objectClass=group)" // Active Directory's groups only
		res, err := collect(t, c)
		if err != nil {
			t.Fatal(err)
		}
		// d is not found by this filter, so it is one member, not three.
		diff(t, res.Sizes, map[string]int{"ad-list@example.org": 3})
	})

	t.Run("bind refused", func(t *testing.T) {
		c := ldapCfg(t, s)
		c.LDAP.PasswordFile = passwordFile(t, "wrong")
		_, err := collect(t, c)
		if err == nil || !strings.Contains(err.Error(), "bind as "+s.ReaderDN+" refused: Invalid Credentials") ||
			!strings.Contains(err.Error(), "ldap "+s.URL) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestLDAPUnreachable(t *testing.T) {
	c := listsync.Defaults()
	c.LDAP.URL = fmt.Sprintf("ldap://127.0.0.1:%d", testenv.FreePort(t))
	c.LDAP.BaseDN = "dc=example,dc=org"
	res, err := collect(t, c)
	if err == nil || res.Sizes != nil {
		t.Fatalf("Collect = %v, %v; want an error and no sizes", res, err)
	}
	if !strings.Contains(err.Error(), "list sync from ldap "+c.LDAP.URL+" failed: cannot connect") ||
		!strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %q, want one line naming the source and why", err)
	}
}

func TestLDAPTLS(t *testing.T) {
	s := slapdenv.Start(t, slapdenv.Options{TLS: true, LDIF: "dn: " + groups + "\nobjectClass: organizationalUnit\nou: groups\n\n" +
		"dn: cn=l," + groups + "\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: l\nmail: l@example.org\nmember: uid=x,dc=example,dc=org\nmember: uid=y,dc=example,dc=org\n"})
	for _, tc := range []struct {
		name     string
		url      string
		starttls bool
		ca       string
		err      string
	}{
		{"starttls", s.URL, true, s.TLS.CAFile, ""},
		{"ldaps", s.LDAPSURL, false, s.TLS.CAFile, ""},
		{"ldaps, unknown CA", s.LDAPSURL, false, "", "certificate signed by unknown authority"},
		{"starttls, unknown CA", s.URL, true, "", "StartTLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ldapCfg(t, s)
			c.LDAP.URL, c.LDAP.StartTLS, c.LDAP.CAFile = tc.url, tc.starttls, tc.ca
			res, err := collect(t, c)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			diff(t, res.Sizes, map[string]int{"l@example.org": 2})
		})
	}
}
