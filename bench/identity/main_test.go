package identity

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/bench/noop"
)

// The test binary doubles as the no-op milter's process: started with
// noopEnv=ADDR it serves the no-op milter on ADDR until SIGTERM instead of
// running tests (startNoopProcess).
const (
	noopEnv     = "STORMGUARD_IDENTITY_NOOP"
	noopStarted = "noop milter started"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(noopEnv); addr != "" {
		os.Exit(serveNoop(addr))
	}
	os.Exit(m.Run())
}

func serveNoop(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := noop.NewServer()
	done := make(chan error, 1)
	go func() { done <- noop.Serve(srv, ln) }()
	fmt.Fprintln(os.Stderr, noopStarted, "on", addr)
	select {
	case err := <-done:
		fmt.Fprintln(os.Stderr, "noop:", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-done
	return 0
}
