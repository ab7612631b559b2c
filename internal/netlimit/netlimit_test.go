package netlimit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestCapClosesConnectionsBeyondMax: with max open, a new connection is
// closed at once and counted; once one closes, the next is let in.
func TestCapClosesConnectionsBeyondMax(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	ln := New(raw, "test", 2, &st, nil)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first, second := dial(), dial()
	_, _ = first, second
	a1, a2 := <-accepted, <-accepted
	if got := st.Open.Load(); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection beyond the cap: read %v, want it closed", err)
	}
	if got := st.Refused.Load(); got != 1 {
		t.Errorf("refused = %d, want 1", got)
	}
	a1.Close()
	a1.Close() // a second Close gives back nothing more
	if got := st.Open.Load(); got != 1 {
		t.Errorf("open after a close = %d, want 1", got)
	}
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a connection after one closed was not let in")
	}
	a2.Close()
}

// flaky fails its first n Accepts with err, then accepts from a pipe.
type flaky struct {
	n      int
	err    error
	closed chan struct{}
}

func (f *flaky) Accept() (net.Conn, error) {
	if f.n > 0 {
		f.n--
		return nil, f.err
	}
	select {
	case <-f.closed:
		return nil, net.ErrClosed
	default:
	}
	c, _ := net.Pipe()
	return c, nil
}
func (f *flaky) Close() error   { close(f.closed); return nil }
func (f *flaky) Addr() net.Addr { return &net.TCPAddr{} }

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// TestAcceptErrorsAreRetried: out of descriptors, Accept waits and tries
// again rather than returning (which ends a server's Serve).
func TestAcceptErrorsAreRetried(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			var st Stats
			ln := New(&flaky{n: 4, err: acceptErr(errno), closed: make(chan struct{})}, "test", 0, &st, nil)
			defer ln.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatalf("Accept returned %v, want it retried", err)
			}
			c.Close()
			if got := st.AcceptErrors.Load(); got != 4 {
				t.Errorf("accept errors = %d, want 4", got)
			}
		})
	}
}

// TestPermanentAcceptErrorIsReturned: a closed listener, or an error that
// does not pass, ends Accept.
func TestPermanentAcceptErrorIsReturned(t *testing.T) {
	bad := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EBADF)}
	ln := New(&flaky{n: 1, err: bad, closed: make(chan struct{})}, "test", 0, nil, nil)
	if _, err := ln.Accept(); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Accept = %v, want EBADF", err)
	}
	if Temporary(fmt.Errorf("wrapped: %w", net.ErrClosed)) {
		t.Error("a closed listener's error counts as temporary")
	}
}

// TestCloseEndsTheRetryPause: Close during the pause after an accept
// error ends Accept at once.
func TestCloseEndsTheRetryPause(t *testing.T) {
	ln := New(&flaky{n: 1 << 30, err: acceptErr(syscall.EMFILE), closed: make(chan struct{})}, "test", 0, nil, nil)
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept kept retrying after Close")
	}
}

// TestCapPerClient: with a per-client cap of 2, a client's third
// connection is closed and counted while another client's get in; once
// one of the first client's closes, its next gets in.
func TestCapPerClient(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	ln := New(raw, "test", 10, &st, nil).LimitPerClient(2)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	}
	dial("127.0.0.1")
	dial("127.0.0.1")
	a1 := <-accepted
	<-accepted
	if third := dial("127.0.0.1"); !closed(third) {
		t.Fatal("a client's third connection was not closed")
	}
	dial("127.0.0.2")
	dial("127.0.0.2")
	<-accepted
	<-accepted
	if st.Open.Load() != 4 || st.Refused.Load() != 1 {
		t.Fatalf("open %d refused %d, want 4 and 1", st.Open.Load(), st.Refused.Load())
	}
	a1.Close()
	dial("127.0.0.1")
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("after one closed, the client's next connection was not let in")
	}
	if st.Open.Load() != 4 || st.Refused.Load() != 1 {
		t.Errorf("open %d refused %d, want 4 and 1", st.Open.Load(), st.Refused.Load())
	}
}
