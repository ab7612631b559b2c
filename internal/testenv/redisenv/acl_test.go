package redisenv

import (
	"strings"
	"testing"
)

func TestAddACLUser(t *testing.T) {
	addr := Start(t)
	AddACLUser(t, addr)
	as := func(args ...string) (string, error) {
		return CLIAs(addr, ACLUser, ACLPassword, args...)
	}
	if _, err := as("SET", "stormguard:k", "v"); err != nil {
		t.Errorf("SET on a stormguard key: %v", err)
	}
	if _, err := as("PUBLISH", "stormguard:events", "{}"); err != nil {
		t.Errorf("PUBLISH on the events channel: %v", err)
	}
	for _, refused := range [][]string{
		{"GET", "other:k"},
		{"FLUSHALL"},
		{"KEYS", "*"},
		{"CONFIG", "GET", "dir"},
		{"PUBLISH", "other", "x"},
		{"SCRIPT", "FLUSH"},
	} {
		if _, err := as(refused...); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s: err = %v, want NOPERM", strings.Join(refused, " "), err)
		}
	}
	if got, err := as("ACL", "WHOAMI"); err == nil {
		t.Errorf("ACL WHOAMI allowed: %q", got)
	}
	if !strings.HasPrefix(ACLLine("u", "p"), "user u on >p resetkeys ~stormguard:* resetchannels &stormguard:* -@all +") {
		t.Errorf("ACLLine = %q", ACLLine("u", "p"))
	}
}
