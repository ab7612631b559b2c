package redisenv

import "testing"

func TestStartRedisTLS(t *testing.T) {
	r := StartTLS(t)
	if got := r.CLI(t, "PING"); got != "PONG" {
		t.Fatalf("PING over TLS = %q", got)
	}
	if got := r.CLI(t, "CONFIG", "GET", "port"); got != "port\n0" {
		t.Errorf("plain port = %q, want 0 (TLS only)", got)
	}
	if _, err := CLIErr(r.Addr, "PING"); err == nil {
		t.Error("plain-text PING to the TLS port succeeded")
	}
	// Without a client certificate the server refuses the handshake.
	if _, err := redisPID(r.Addr, r.Files.ClientConfig(t, false)); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := checkPID(r.Addr, r.Pid(), r.Files.ClientConfig(t, true)); err != nil {
		t.Errorf("with the client certificate: %v", err)
	}
}
