package listsync_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/listsync"
)

// TestValidate: each mistake is refused with the key it is in.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*listsync.Config)
		err  string
	}{
		{"defaults", func(*listsync.Config) {}, ""},
		{"alias maps without a domain", func(c *listsync.Config) { c.AliasMaps = []string{"hash:/etc/aliases"} }, "listsync.alias_domains"},
		{"a map without its type", func(c *listsync.Config) { c.VirtualMaps = []string{"/etc/postfix/virtual"} }, "not type:path"},
		{"a domain with @", func(c *listsync.Config) {
			c.AliasMaps, c.AliasDomains = []string{"hash:/etc/aliases"}, []string{"@example.org"}
		}, "listsync.alias_domains"},
		{"min members", func(c *listsync.Config) { c.MinMembers = 0 }, "listsync.min_members"},
		{"http url", func(c *listsync.Config) { c.LDAP.URL, c.LDAP.BaseDN = "http://ldap", "dc=x" }, "listsync.ldap.url"},
		{"starttls on ldaps", func(c *listsync.Config) {
			c.LDAP.URL, c.LDAP.BaseDN, c.LDAP.StartTLS = "ldaps://ldap", "dc=x", true
		}, "listsync.ldap.starttls"},
		{"no base", func(c *listsync.Config) { c.LDAP.URL = "ldap://ldap" }, "listsync.ldap.base_dn"},
		{"bad filter", func(c *listsync.Config) {
			c.LDAP.URL, c.LDAP.BaseDN, c.LDAP.Filter = "ldap://ldap", "dc=x", "(objectClass=group"
		}, "listsync.ldap.filter"},
		{"bind without password", func(c *listsync.Config) {
			c.LDAP.URL, c.LDAP.BaseDN, c.LDAP.BindDN = "ldap://ldap", "dc=x", "cn=me,dc=x"
		}, "listsync.ldap.password_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listsync.Defaults()
			tc.set(&c)
			err := c.Validate()
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
}

// TestTimeout: a directory that accepts and never answers is given up at
// listsync.timeout, with nothing read.
func TestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	c := listsync.Defaults()
	c.LDAP.URL, c.LDAP.BaseDN = "ldap://"+ln.Addr().String(), "dc=example,dc=org"
	c.Timeout = 300 * time.Millisecond
	start := time.Now()
	res, err := listsync.Collect(context.Background(), c, c.Sources())
	if err == nil || res.Sizes != nil || !strings.Contains(err.Error(), "not done within listsync.timeout 300ms") {
		t.Errorf("Collect = %v, %v", res.Sizes, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}
