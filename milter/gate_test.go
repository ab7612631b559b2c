package milter

import (
	"context"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// gateConfig: all-staff has 850,000 members and the gate guards every
// audience of 5,000 or more; @comms.example.org may post (config), and
// the store adds more.
func gateConfig(action policy.ConfigAction) Config {
	cfg := testConfig()
	cfg.Lists = map[string]int{listAddr: 850000}
	cfg.Policy.Gate = policy.Gate{MinAudience: 5000, Action: action}
	cfg.Posters = []string{"@comms.example.org"}
	cfg.Exempt = []string{"postmaster@example.org"}
	cfg.GateRejectText = Defaults().GateRejectText
	return cfg
}

// gateSession is newSession with a SASL login ({auth_authen}) given at
// MAIL, as Postfix gives it after AUTH; "" for none.
func gateSession(t *testing.T, addr, login string) *gomilter.ClientSession {
	t.Helper()
	macros := gomilter.NewMacroBag()
	if login != "" {
		macros.Set(gomilter.MacroAuthAuthen, login)
	}
	return newSessionWith(t, addr, macros)
}

func from(m mail, sender string) mail {
	m.from = sender
	return m
}

// gateStores runs fn on the memory store and on a real Redis, each with
// the store's posters set holding comms@example.org (a sender) and jdoe
// (a SASL login): on Redis written with redis-cli SADD, as an operator
// would.
func gateStores(t *testing.T, fn func(t *testing.T, st, fallback store.Store)) {
	t.Run("memory", func(t *testing.T) {
		st := store.NewMemory()
		for _, p := range []string{"comms@example.org", "JDoe"} {
			if err := st.AddPoster(context.Background(), p); err != nil {
				t.Fatal(err)
			}
		}
		fn(t, st, nil)
	})
	t.Run("redis", func(t *testing.T) {
		addr := redisenv.Start(t)
		redisenv.CLI(t, addr, "SADD", "stormguard:posters", "comms@example.org", "jdoe")
		client := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		st := store.NewRedis(client, "")
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st, store.NewMemory())
	})
}

// TestGateRefusesTheFirstMessage is the NHSmail case: an unlisted sender's
// "test email" to an 850,000-member list is refused at the first message,
// with a 550 naming the list and how to get permission, and reaches no
// store (it counts toward nothing); allowed posters by sender (store), by
// domain (config) and by SASL login (store) pass, and so do exempt
// senders; a reply-all from an unlisted sender is refused the same way.
func TestGateRefusesTheFirstMessage(t *testing.T) {
	gateStores(t, func(t *testing.T, st, fallback store.Store) {
		h := startServer(t, gateConfig(policy.ConfigReject), st, fallback)
		if err := h.f.RefreshGlobals(context.Background()); err != nil {
			t.Fatal(err)
		}

		skipped := h.f.Stats.StoreSkipped.Load()
		r := send(t, gateSession(t, h.addr, ""), from(original("test-1@example.org"), "contractor@example.org"))
		if r.code() != 550 || !strings.Contains(r.act.SMTPReply, "5.7.1") || !strings.Contains(r.act.SMTPReply, listAddr) ||
			!strings.Contains(r.act.SMTPReply, "permission") {
			t.Fatalf("unlisted sender's first message: got %d %q, want 550 5.7.1 naming %s and how to get permission", r.code(), r.act.SMTPReply, listAddr)
		}
		if got := h.f.Stats.StoreSkipped.Load() - skipped; got != 1 {
			t.Errorf("the refused message went to the store (%d skipped, want 1)", got)
		}
		if !strings.Contains(h.logs.String(), "rule=gate") || !strings.Contains(h.logs.String(), "list="+listAddr) {
			t.Errorf("no decision line with rule=gate and the list:\n%s", h.logs.String())
		}

		if r := send(t, gateSession(t, h.addr, ""), from(replyAll(1, "test-1@example.org"), "user1@example.org")); r.code() != 550 {
			t.Errorf("unlisted sender's reply-all: got %d %q, want 550", r.code(), r.act.SMTPReply)
		}

		for _, c := range []struct{ name, sender, login string }{
			{"poster by sender (store)", "comms@example.org", ""},
			{"poster by sender, other case", "Comms@Example.org", ""},
			{"poster by domain (config)", "news@comms.example.org", ""},
			{"poster by SASL login (store)", "anyone@example.org", "jdoe"},
			{"exempt sender", "postmaster@example.org", ""},
		} {
			if r := send(t, gateSession(t, h.addr, c.login), from(original("ok-"+c.name+"@example.org"), c.sender)); r.code() != 250 {
				t.Errorf("%s: got %d %q, want 250", c.name, r.code(), r.act.SMTPReply)
			}
		}
		for _, c := range []struct{ name, sender, login string }{
			{"another SASL login", "anyone@example.org", "mallory"},
			{"the domain's own address is no @domain entry", "comms.example.org@evil.example", ""},
			{"a subdomain of a poster domain", "x@sub.comms.example.org", ""},
			{"a login spelled as the @domain", "anyone@example.org", "@comms.example.org"},
		} {
			if r := send(t, gateSession(t, h.addr, c.login), from(original("no-"+c.name+"@example.org"), c.sender)); r.code() != 550 {
				t.Errorf("%s: got %d %q, want 550", c.name, r.code(), r.act.SMTPReply)
			}
		}
		// Below the gate's audience: not gated.
		small := from(original("small@example.org"), "contractor@example.org")
		small.rcpts = []string{"a@example.org", "b@example.org"}
		if r := send(t, gateSession(t, h.addr, ""), small); r.code() != 250 {
			t.Errorf("small audience: got %d, want 250", r.code())
		}
	})
}

// TestGateStoreChangesApply: a poster added with redis-cli (or the admin
// API) passes after the next refresh, with no restart.
func TestGateStoreChangesApply(t *testing.T) {
	st := store.NewMemory()
	h := startServer(t, gateConfig(policy.ConfigReject), st, nil)
	m := from(original("late@example.org"), "late@example.org")
	if r := send(t, gateSession(t, h.addr, ""), m); r.code() != 550 {
		t.Fatalf("before: got %d, want 550", r.code())
	}
	if err := st.AddPoster(context.Background(), "late@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := h.f.RefreshGlobals(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := send(t, gateSession(t, h.addr, ""), m); r.code() != 250 {
		t.Fatalf("after adding the poster: got %d %q, want 250", r.code(), r.act.SMTPReply)
	}
}

// TestGateActions: tempfail answers 451 4.7.1 naming the list; hold
// accepts the message into the MTA's hold queue with the quarantine
// action at end of message (the client sees it); mode monitor tags.
func TestGateActions(t *testing.T) {
	gateStores(t, func(t *testing.T, st, fallback store.Store) {
		t.Run("tempfail", func(t *testing.T) {
			h := startServer(t, gateConfig(policy.ConfigTempfail), st, fallback)
			r := send(t, gateSession(t, h.addr, ""), from(original("tf@example.org"), "contractor@example.org"))
			if r.code() != 451 || !strings.Contains(r.act.SMTPReply, "4.7.1") || !strings.Contains(r.act.SMTPReply, listAddr) {
				t.Fatalf("got %d %q, want 451 4.7.1 naming the list", r.code(), r.act.SMTPReply)
			}
		})
		t.Run("hold", func(t *testing.T) {
			h := startServer(t, gateConfig(policy.ConfigHold), st, fallback)
			if err := h.f.RefreshGlobals(context.Background()); err != nil {
				t.Fatal(err)
			}
			s := gateSession(t, h.addr, "")
			r := send(t, s, from(original("hold@example.org"), "contractor@example.org"))
			held := ""
			for _, m := range r.mods {
				if m.Type == gomilter.ActionQuarantine {
					held = m.Reason
				}
			}
			if r.act.Type != gomilter.ActionAccept || !strings.Contains(held, listAddr) || !strings.Contains(held, "contractor@example.org") {
				t.Fatalf("got %v with modifications %v, want accept with a quarantine naming the sender and the list", r.act, r.mods)
			}
			// The next message on the same connection, from a poster, is not held.
			r = send(t, s, from(original("ok@example.org"), "comms@example.org"))
			for _, m := range r.mods {
				if m.Type == gomilter.ActionQuarantine {
					t.Fatalf("a poster's message after a held one was held too: %v", r.mods)
				}
			}
		})
		t.Run("monitor", func(t *testing.T) {
			cfg := gateConfig(policy.ConfigHold)
			cfg.Mode = policy.ModeMonitor
			h := startServer(t, cfg, st, fallback)
			r := send(t, gateSession(t, h.addr, ""), from(original("mon@example.org"), "contractor@example.org"))
			if tag := r.header("X-Stormguard"); r.code() != 250 || !strings.Contains(tag, "rule=gate") || !strings.Contains(tag, "list="+listAddr) {
				t.Fatalf("got %d, tag %q, want 250 and a would-refuse tag with rule=gate and the list", r.code(), tag)
			}
			for _, m := range r.mods {
				if m.Type == gomilter.ActionQuarantine {
					t.Fatalf("monitor mode held the message: %v", r.mods)
				}
			}
		})
	})
}
