package milter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

const (
	otherList = "other@example.org"    // no policy of its own: the site's
	tempList  = "temp@example.org"     // max_replies=1;action=tempfail
	laxList   = "announce@example.org" // max_replies 30, monitor (TestListPolicyThresholds)
	hugeList  = "huge@example.org"     // min_audience 10,000,000 (TestListPolicyThresholds)
)

// listMail is a message from sender to lists (envelope and To); a reply to
// root when root is not "".
func listMail(sender, id, root string, lists ...string) mail {
	m := mail{
		from:  sender,
		rcpts: lists,
		headers: [][2]string{
			{"From", " <" + sender + ">"},
			{"To", " " + strings.Join(lists, ", ")},
			{"Subject", " Test " + id},
			{"Message-ID", " <" + id + ">"},
		},
	}
	if root != "" {
		m.headers[2][1] = " RE: Test " + root
		m.headers = append(m.headers, [2]string{"In-Reply-To", " <" + root + ">"}, [2]string{"References", " <" + root + ">"})
	}
	return m
}

// listPolicyConfig: site max_replies 10; three 3000-member lists, one
// with max_replies 5 in the config file (which the store's 3 replaces).
func listPolicyConfig() Config {
	cfg := testConfig()
	cfg.Policy.Limits.MaxReplies = 10
	cfg.Lists = map[string]int{listAddr: 3000, otherList: 3000, tempList: 3000, laxList: 3000, hugeList: 3000}
	cfg.ListPolicies = map[string]policy.ListPolicy{listAddr: {Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 5}}}
	return cfg
}

// listPolicyStores runs fn on the memory store and on a real Redis, each
// holding all-staff's max_replies=3 and temp's policy: on Redis written
// with redis-cli HSET, as an operator would.
func listPolicyStores(t *testing.T, extra map[string]string, fn func(t *testing.T, st, fallback store.Store)) {
	pol := map[string]string{listAddr: "max_replies=3", tempList: "max_replies=1;action=tempfail"}
	for k, v := range extra {
		pol[k] = v
	}
	t.Run("memory", func(t *testing.T) {
		st := store.NewMemory()
		for addr, s := range pol {
			p, err := policy.ParseListPolicy(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.SetListPolicy(context.Background(), addr, p); err != nil {
				t.Fatal(err)
			}
		}
		fn(t, st, nil)
	})
	t.Run("redis", func(t *testing.T) {
		addr := redisenv.Start(t)
		for a, s := range pol {
			redisenv.CLI(t, addr, "HSET", "stormguard:listpolicy", a, s)
		}
		client := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		st := store.NewRedis(client, "")
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st, store.NewMemory())
	})
}

// TestListPolicyThresholds: with all-staff at max_replies 3 and another
// list at the site's 10, the 4th reply to all-staff is refused while the
// other list's thread takes 10 and refuses the 11th; a thread to both
// gets the strictest (3); a list's own action applies (tempfail), and the
// strictest action wins when lists differ. A lax list in Cc (max_replies
// 30 and monitor, or min_audience 10,000,000) does not loosen a list
// without a policy of its own: the 11th reply is refused.
func TestListPolicyThresholds(t *testing.T) {
	lax := map[string]string{laxList: `{"max_replies":30,"action":"monitor"}`, hugeList: `{"min_audience":10000000}`}
	listPolicyStores(t, lax, func(t *testing.T, st, fallback store.Store) {
		h := startServer(t, listPolicyConfig(), st, fallback)
		if err := h.f.RefreshGlobals(context.Background()); err != nil {
			t.Fatal(err)
		}
		storm := func(name string, lists []string, take int, wantCode uint16) {
			t.Helper()
			root := "root-" + name + "@example.org"
			if r := send(t, newSession(t, h.addr), listMail("boss@example.org", root, "", lists...)); r.code() != 250 {
				t.Fatalf("%s: original got %d %q", name, r.code(), r.act.SMTPReply)
			}
			for i := 1; i <= take; i++ {
				r := send(t, newSession(t, h.addr), listMail(fmt.Sprintf("user%d@example.org", i), fmt.Sprintf("%s-%d@example.org", name, i), root, lists...))
				if r.code() != 250 {
					t.Fatalf("%s: reply %d got %d %q, want 250", name, i, r.code(), r.act.SMTPReply)
				}
			}
			r := send(t, newSession(t, h.addr), listMail("late@example.org", name+"-late@example.org", root, lists...))
			if r.code() != wantCode {
				t.Fatalf("%s: reply %d got %d %q, want %d", name, take+1, r.code(), r.act.SMTPReply, wantCode)
			}
		}
		storm("allstaff", []string{listAddr}, 3, 550)
		storm("other", []string{otherList}, 10, 550)
		storm("both", []string{otherList, listAddr}, 3, 550)
		storm("temp", []string{tempList}, 1, 451)
		storm("temp-and-allstaff", []string{tempList, listAddr}, 1, 550) // reject beats tempfail
		storm("lax-cc", []string{otherList, laxList}, 10, 550)
		storm("huge-cc", []string{otherList, hugeList}, 10, 550)
		storm("lax-alone", []string{laxList}, 30, 250) // monitor: the 31st is tagged, not refused
		if !strings.Contains(h.logs.String(), "rule=max_replies") {
			t.Errorf("no decision line with rule=max_replies:\n%s", h.logs.String())
		}
	})
}

// TestListPolicyPosters: a list with posters of its own takes a message
// only from one of them, a site poster or an exempt sender, whatever the
// audience and with the site's gate off; a message to it and to an open
// list needs to be allowed on it too; the refusal names the gated list.
func TestListPolicyPosters(t *testing.T) {
	extra := map[string]string{listAddr: "posters=comms@example.org,@hr.example.org"}
	listPolicyStores(t, extra, func(t *testing.T, st, fallback store.Store) {
		cfg := listPolicyConfig()
		cfg.Lists = map[string]int{listAddr: 40, otherList: 3000} // small: only the list's gate can stop it
		cfg.Posters = []string{"ceo@example.org"}
		cfg.Exempt = []string{"postmaster@example.org"}
		h := startServer(t, cfg, st, fallback)
		if err := h.f.RefreshGlobals(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			sender string
			lists  []string
			want   uint16
		}{
			{"comms@example.org", []string{listAddr}, 250},
			{"anna@hr.example.org", []string{listAddr}, 250},
			{"ceo@example.org", []string{listAddr}, 250},        // a site poster
			{"postmaster@example.org", []string{listAddr}, 250}, // exempt
			{"user1@example.org", []string{otherList}, 250},     // an open list
			{"user1@example.org", []string{listAddr}, 550},
			{"user1@example.org", []string{otherList, listAddr}, 550},
			{"x@evil.example", []string{listAddr}, 550},
		} {
			id := fmt.Sprintf("post-%s-%d@example.org", c.sender, len(c.lists))
			r := send(t, newSession(t, h.addr), listMail(c.sender, id, "", c.lists...))
			if r.code() != c.want {
				t.Errorf("%s to %v: got %d %q, want %d", c.sender, c.lists, r.code(), r.act.SMTPReply, c.want)
			}
			if c.want == 550 && !strings.Contains(r.act.SMTPReply, listAddr) {
				t.Errorf("%s to %v: refusal %q does not name %s", c.sender, c.lists, r.act.SMTPReply, listAddr)
			}
		}
	})
}

// TestListPolicyRefresh: a policy changed in the store applies after the
// next refresh, and the config file's applies again once the store's is
// deleted.
func TestListPolicyRefresh(t *testing.T) {
	st := store.NewMemory()
	h := startServer(t, listPolicyConfig(), st, nil)
	ctx := context.Background()
	limit := func() int {
		g := h.f.globals.Load()
		return messagePolicy(g, []string{listAddr}, nil).Limits.MaxReplies
	}
	if got := limit(); got != 5 {
		t.Fatalf("config's policy: max_replies %d, want 5", got)
	}
	if err := st.SetListPolicy(ctx, listAddr, policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := h.f.RefreshGlobals(ctx); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 2 {
		t.Fatalf("store's policy: max_replies %d, want 2", got)
	}
	if err := st.SetListPolicy(ctx, listAddr, policy.ListPolicy{}); err != nil {
		t.Fatal(err)
	}
	if err := h.f.RefreshGlobals(ctx); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 5 {
		t.Fatalf("store's policy deleted: max_replies %d, want the config's 5", got)
	}
}

// TestListPolicyForgedHeader: a list named only in a forged To header
// (not in the envelope) lends the message no policy, without
// split_envelopes.
func TestListPolicyForgedHeader(t *testing.T) {
	cfg := listPolicyConfig()
	cfg.ListPolicies[otherList] = policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 50}}
	f, err := NewFilter(cfg, store.NewMemory(), nil, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g := f.globals.Load()
	c := messagePolicy(g, []string{"a@example.org"}, []string{otherList})
	if c.Limits.MaxReplies != 10 {
		t.Errorf("a forged header's list applied: max_replies %d, want the site's 10", c.Limits.MaxReplies)
	}
	cfg.Policy.SplitEnvelopes = true
	if f, err = NewFilter(cfg, store.NewMemory(), nil, discardLogger(), nil); err != nil {
		t.Fatal(err)
	}
	c = messagePolicy(f.globals.Load(), []string{"a@example.org"}, []string{"<Other@Example.org>"})
	if c.Limits.MaxReplies != 50 {
		t.Errorf("with split_envelopes the header's list applies: max_replies %d, want 50", c.Limits.MaxReplies)
	}
}

// messagePolicy is the policy (policy.Site.Plan) of a message to rcpts
// whose To header names hdr.
func messagePolicy(g *globals, rcpts, hdr []string) policy.Config {
	return g.site.Plan(policy.Envelope{Rcpts: rcpts}, &policy.Headers{To: []string{strings.Join(hdr, ", ")}}).Config
}

func TestListPolicyValidate(t *testing.T) {
	cfg := testConfig()
	cfg.ListPolicies = map[string]policy.ListPolicy{"nolist": {Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 3}}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "list_policy") {
		t.Errorf("a policy for %q: %v, want a list_policy error", "nolist", err)
	}
	cfg.ListPolicies = map[string]policy.ListPolicy{listAddr: {Action: "drop"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "list_policy: "+listAddr) {
		t.Errorf("action drop: %v, want a list_policy error naming the list", err)
	}
}

// TestListPolicyHolds: a list policy in the config file that holds (its
// action, or its posters with gate.action hold) makes the server ask for
// the quarantine action.
func TestListPolicyHolds(t *testing.T) {
	for _, c := range []struct {
		name string
		p    policy.ListPolicy
		gate policy.ConfigAction
		want bool
	}{
		{"no hold", policy.ListPolicy{Limits: map[policy.Rule]int64{policy.RuleMaxReplies: 3}}, policy.ConfigHold, false},
		{"list action hold", policy.ListPolicy{Action: policy.ConfigHold}, policy.ConfigReject, true},
		{"list posters, gate.action hold", policy.ListPolicy{Posters: []string{"a@example.org"}}, policy.ConfigHold, true},
		{"list posters, gate.action reject", policy.ListPolicy{Posters: []string{"a@example.org"}}, policy.ConfigReject, false},
	} {
		cfg := testConfig()
		cfg.Policy.Gate.Action = c.gate
		cfg.ListPolicies = map[string]policy.ListPolicy{listAddr: c.p}
		if got := cfg.Holds(); got != c.want {
			t.Errorf("%s: Holds = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDecisionLimits: a stored decision carries the limits it was counted
// under, the list's own where it has some (for the history's near misses).
func TestDecisionLimits(t *testing.T) {
	f, err := NewFilter(listPolicyConfig(), store.NewMemory(), nil, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for list, want := range map[string]int{listAddr: 5, otherList: 10} {
		d := f.Decide(ctx, &Message{Sender: "boss@example.org", Rcpts: []string{list},
			Headers: policy.Headers{MessageID: "<lim-" + list + ">", Subject: "x", To: []string{list}}})
		if !d.Stored || d.Limits.MaxReplies != want || d.Limits.Window != time.Hour {
			t.Errorf("%s: stored %v, limits %+v, want max_replies %d", list, d.Stored, d.Limits, want)
		}
	}
}

// TestBareNameWithoutLocalDomains: with policy.local_domains unset, a bare
// local name (RCPT TO:<all-staff>, which the MTA qualifies with its own
// domain) is taken in the registered lists' domains: it counts as the
// list of that name, not as one mailbox.
func TestBareNameWithoutLocalDomains(t *testing.T) {
	cfg := listPolicyConfig()
	cfg.Recipients.LocalDomains = nil
	f, err := NewFilter(cfg, store.NewMemory(), nil, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bare, _, _ := strings.Cut(listAddr, "@")
	p := f.globals.Load().site.Plan(policy.Envelope{Sender: "a@example.net", Rcpts: []string{bare}}, &policy.Headers{MessageID: "<r@example.org>"})
	if p.Facts.Audience != 3000 || len(p.Lists) != 1 || p.Lists[0] != listAddr {
		t.Errorf("RCPT TO:<%s>: audience %d, lists %q; want 3000 and [%s]", bare, p.Facts.Audience, p.Lists, listAddr)
	}
}
