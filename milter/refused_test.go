package milter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestRefusedMailCreatesNoThread: a gate refusal, a small message and an
// auto-reply refused for its audience, each through the milter protocol,
// leave no thread in the store (memory and Redis), so that no amount of
// refused mail can push a storm out of it.
func TestRefusedMailCreatesNoThread(t *testing.T) {
	gateStores(t, func(t *testing.T, st, fallback store.Store) {
		h := startServer(t, gateConfig(policy.ConfigReject), st, fallback)
		if err := h.f.RefreshGlobals(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := send(t, gateSession(t, h.addr, ""), from(original("gated@example.org"), "contractor@example.org")); r.code() != 550 {
			t.Errorf("gated original: got %d %q, want 550", r.code(), r.act.SMTPReply)
		}
		small := from(original("small@example.org"), "contractor@example.org")
		small.rcpts = []string{"a@example.org", "b@example.org"}
		if r := send(t, gateSession(t, h.addr, ""), small); r.code() != 250 {
			t.Errorf("small message: got %d, want 250", r.code())
		}
		auto := from(replyAll(1, "root@example.org"), "comms@example.org") // an allowed poster: past the gate
		auto.headers = append(auto.headers, [2]string{"Auto-Submitted", " auto-replied"})
		if r := send(t, gateSession(t, h.addr, ""), auto); r.code() != 550 {
			t.Errorf("auto-reply to the list: got %d %q, want 550", r.code(), r.act.SMTPReply)
		}
		if !strings.Contains(h.logs.String(), "rule=auto_reply") {
			t.Fatalf("no auto_reply decision:\n%s", h.logs.String())
		}
		listed, err := st.(store.Lister).Threads(context.Background(), time.Now(), 0)
		if err != nil || len(listed) != 0 {
			t.Errorf("Threads after refused mail = %d threads, %v, want none", len(listed), err)
		}
	})
}
