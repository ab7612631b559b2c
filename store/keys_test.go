package store_test

import (
	"slices"
	"testing"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestKeys: the key names operators read and write with redis-cli (the
// list in store/keys.go), built by the one place that builds them.
func TestKeys(t *testing.T) {
	const th, id = policy.ThreadID("0123456789abcdef"), policy.Key("00112233445566778899aabbccddeeff")
	k := store.NewKeys("acme:sg:")
	for got, want := range map[string]string{
		k.Replies(th):  "acme:sg:{0123456789abcdef}:replies",
		k.Meta(th):     "acme:sg:{0123456789abcdef}:meta",
		k.Block(th):    "acme:sg:{0123456789abcdef}:block",
		k.Override(th): "acme:sg:{0123456789abcdef}:override",
		k.Senders(th):  "acme:sg:{0123456789abcdef}:senders",
		k.Alias(th):    "acme:sg:{0123456789abcdef}:alias",
		k.Link(id):     "acme:sg:link:{00112233445566778899aabbccddeeff}",
		k.Threads():    "acme:sg:threads",
		k.Lists():      "acme:sg:lists",
		k.Exempt():     "acme:sg:exempt",
		k.Mode():       "acme:sg:mode",
		k.Events():     "acme:sg:events",
		k.Prefix():     "acme:sg:",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got, want := k.Thread(th), []string{k.Replies(th), k.Meta(th), k.Block(th), k.Override(th), k.Senders(th), k.Alias(th)}; !slices.Equal(got, want) {
		t.Errorf("Thread = %q, want %q", got, want)
	}
	if got := store.NewKeys("").Mode(); got != store.DefaultPrefix+"mode" {
		t.Errorf("default prefix: Mode = %q", got)
	}
	if got := store.NewKeys(`a*b?[c]\:`).Pattern(); got != `a\*b\?\[c\]\\:*` {
		t.Errorf("Pattern = %q", got)
	}
	if got, want := k.Unexpiring(), []string{"acme:sg:threads", "acme:sg:lists", "acme:sg:exempt", "acme:sg:mode"}; !slices.Equal(got, want) {
		t.Errorf("Unexpiring = %q, want %q", got, want)
	}
}
