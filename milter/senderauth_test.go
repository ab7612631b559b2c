package milter

import (
	"net/netip"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// sessionFrom is newSession from client address ip, with a SASL login
// ("" for none).
func sessionFrom(t *testing.T, addr, ip, login string) *gomilter.ClientSession {
	t.Helper()
	macros := gomilter.NewMacroBag()
	if login != "" {
		macros.Set(gomilter.MacroAuthAuthen, login)
	}
	s, err := gomilter.NewClient("tcp", addr).Session(macros)
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 25000, ip); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSenderAuth: with SenderAuth, an exempt sender or a poster named by
// address or @domain counts only when the client authenticated or
// connects from a trusted network: a forged envelope sender from outside
// is gated and counted; without it (the default) the envelope sender
// alone is trusted.
func TestSenderAuth(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name       string
		senderAuth bool
		ip, login  string
		want       uint16 // the gate's answer to a post from @comms.example.org
	}{
		{"off: forged from outside passes", false, "192.0.2.1", "", 250},
		{"on: forged from outside is gated", true, "192.0.2.1", "", 550},
		{"on: from a trusted network passes", true, "10.1.2.3", "", 250},
		{"on: after SASL login passes", true, "192.0.2.1", "someone", 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gateConfig(policy.ConfigReject)
			cfg.SenderAuth, cfg.TrustedNetworks = tc.senderAuth, trusted
			h := startServer(t, cfg, store.NewMemory(), nil)
			r := send(t, sessionFrom(t, h.addr, tc.ip, tc.login), from(original("auth-"+tc.ip+"@example.org"), "ceo@comms.example.org"))
			if r.code() != tc.want {
				t.Errorf("post to the list from ceo@comms.example.org: %d, want %d", r.code(), tc.want)
			}
		})
	}
	t.Run("exempt sender forged from outside is counted", func(t *testing.T) {
		cfg := testConfig()
		cfg.Lists = map[string]int{listAddr: 3000}
		cfg.Exempt = []string{"@example.org"}
		cfg.SenderAuth, cfg.TrustedNetworks = true, trusted
		h := startServer(t, cfg, store.NewMemory(), nil)
		root := "exempt-forged@example.org"
		refused := 0
		for i := 1; i <= 5; i++ {
			if r := send(t, sessionFrom(t, h.addr, "192.0.2.1", ""), replyAll(i, root)); r.code() == 550 {
				refused++
			}
		}
		if refused != 2 { // max_replies 3: the 4th and 5th
			t.Errorf("5 replies from forged exempt senders: %d refused, want 2 (counted as anyone's)", refused)
		}
		refused = 0
		for i := 1; i <= 5; i++ {
			if r := send(t, sessionFrom(t, h.addr, "10.0.0.7", ""), replyAll(i, "exempt-trusted@example.org")); r.code() == 550 {
				refused++
			}
		}
		if refused != 0 {
			t.Errorf("5 replies from exempt senders on a trusted network: %d refused, want 0", refused)
		}
	})
}
