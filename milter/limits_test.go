package milter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/store"
)

// startLimited runs a real milter server with lim on ln (a loopback TCP
// port when nil) and fails the test if Serve returns before Shutdown.
func startLimited(t *testing.T, lim Limits, ln net.Listener) (*Server, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	f, err := NewFilter(testConfig(), store.NewMemory(), nil, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = Listen("inet:127.0.0.1:0", 0); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewServerWith(f, lim)
	done := make(chan error, 1)
	var shut atomic.Bool
	go func() {
		err := srv.Serve(ln)
		if !shut.Load() {
			t.Errorf("Serve returned before Shutdown: %v", err)
		}
		done <- err
	}()
	t.Cleanup(func() {
		shut.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return srv, ln.Addr().String(), logs
}

// negotiated opens a raw connection and completes the option negotiation,
// as an MTA does before it goes quiet.
func negotiated(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(negotiate); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("no negotiation reply: %v", err)
	}
	n := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// closedByServer waits (up to 10 s) for the server to close c.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// TestSessionLimit: beyond MaxSessions idle negotiated connections, a new
// connection is closed and counted, Serve goes on, and once a session ends
// the next MTA connection gets a real decision.
func TestSessionLimit(t *testing.T) {
	srv, addr, logs := startLimited(t, Limits{MaxSessions: 4, IdleTimeout: time.Minute}, nil)
	idle := make([]net.Conn, 4)
	for i := range idle {
		idle[i] = negotiated(t, addr)
	}
	for range 4 { // twice the limit in all: closed without a negotiation reply
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(negotiate)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 64)); n > 0 || (!errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("connection beyond the limit: read %d bytes, %v; want it closed unanswered", n, err)
		}
		c.Close()
	}
	if got := srv.Conns.Refused.Load(); got != 4 {
		t.Errorf("refused = %d, want 4", got)
	}
	if got := srv.Conns.Open.Load(); got != 4 {
		t.Errorf("open = %d, want 4", got)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("too many connections")) {
		t.Errorf("no log line about the refusals:\n%s", logs.String())
	}
	idle[0].Close()
	// The slot comes back when the server sees the close: retry until then.
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns.Open.Load() > 3 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := send(t, newSession(t, addr), original("limit-1@example.org")).code(); got != 250 {
		t.Fatalf("after a session ended: got %d, want 250", got)
	}
}

// TestIdleSessionIsClosed: a negotiated connection with nothing more from
// the MTA is closed after IdleTimeout, and its slot is free again.
func TestIdleSessionIsClosed(t *testing.T) {
	srv, addr, _ := startLimited(t, Limits{MaxSessions: 1, IdleTimeout: 200 * time.Millisecond}, nil)
	c := negotiated(t, addr)
	start := time.Now()
	closedByServer(t, c)
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("closed after %s, before the idle timeout", took)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns.Open.Load() > 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got := send(t, newSession(t, addr), original("idle-1@example.org")).code(); got != 250 {
		t.Fatalf("after the idle session was closed: got %d, want 250", got)
	}
}

// emfileListener fails its first n Accepts as a process out of file
// descriptors does.
type emfileListener struct {
	net.Listener
	n atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesEMFILE: "accept4: too many open files" must not end
// Serve, and the daemon with it: it is retried.
func TestServeSurvivesEMFILE(t *testing.T) {
	raw, err := Listen("inet:127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: raw}
	ln.n.Store(3)
	srv, addr, logs := startLimited(t, DefaultLimits(), ln)
	if got := send(t, newSession(t, addr), original("emfile-1@example.org")).code(); got != 250 {
		t.Fatalf("got %d, want 250", got)
	}
	if got := srv.Conns.AcceptErrors.Load(); got != 3 {
		t.Errorf("accept errors = %d, want 3", got)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("too many open files")) {
		t.Errorf("the accept error is not logged:\n%s", logs.String())
	}
}

// TestDeclaredLengthIsNotAllocated: a packet that declares 4 MiB and sends
// 1 KiB costs about 1 KiB, not 4 MiB.
func TestDeclaredLengthIsNotAllocated(t *testing.T) {
	in := append([]byte{0, 0x40, 0, 0, 'L'}, bytes.Repeat([]byte("x"), 1024)...) // 4 MiB declared
	client, server := net.Pipe()
	defer client.Close()
	c := &guardConn{Conn: server, r: bufio.NewReaderSize(bytes.NewReader(in), 4096)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := c.fill()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("fill = %v, want unexpected EOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10 {
		t.Errorf("a packet declaring 4 MiB with 1 KiB sent allocated %d bytes", got)
	}
}

// TestWholePacketsStillPass: a large packet that does arrive in pieces is
// passed on whole, and go-milter gets its length only with its bytes.
func TestWholePacketsStillPass(t *testing.T) {
	value := bytes.Repeat([]byte("v"), 300<<10)
	pkt := rawPacket('L', append(append([]byte("X-Big\x00"), value...), 0))
	client, server := net.Pipe()
	defer client.Close()
	c := &guardConn{Conn: server, r: bufio.NewReaderSize(server, 4096)}
	go func() {
		for rest := pkt; len(rest) > 0; {
			n := min(len(rest), 7000)
			if _, err := client.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	got := make([]byte, len(pkt))
	if _, err := io.ReadFull(c, got[:4]); err != nil {
		t.Fatal(err)
	}
	if len(c.buf) != len(pkt)-4 {
		t.Fatalf("after the length was read, %d bytes are queued, want the whole rest %d", len(c.buf), len(pkt)-4)
	}
	if _, err := io.ReadFull(c, got[4:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pkt) {
		t.Fatal("packet changed on its way through the guard")
	}
}
