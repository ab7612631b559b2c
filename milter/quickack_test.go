package milter

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/store"
)

// The no-reply flags are taken when offered and dropped, not required,
// when not: an MTA without them still gets every verdict.
func TestNegotiateNoRepliesIfOffered(t *testing.T) {
	want := Protocols | NoReplies
	offered := want | gomilter.OptNoConnect | gomilter.OptSkip
	_, _, got, _, err := negotiateOffered(6, 6, gomilter.OptAddHeader, gomilter.OptAddHeader, offered, want, gomilter.DataSize64K)
	if err != nil || got != want {
		t.Errorf("MTA offering every flag: protocol %v (err %v), want %v", got, err, want)
	}
	// A version 2 MTA offers none of the v6 flags.
	old := Protocols | gomilter.OptNoConnect | gomilter.OptNoHelo
	_, _, got, _, err = negotiateOffered(2, 6, gomilter.OptAddHeader, gomilter.OptAddHeader, old, want, gomilter.DataSize64K)
	if err != nil || got != Protocols {
		t.Errorf("MTA without no-reply flags: protocol %v (err %v), want %v", got, err, Protocols)
	}
	// Only some of them: those are taken.
	_, _, got, _, err = negotiateOffered(6, 6, gomilter.OptAddHeader, gomilter.OptAddHeader, Protocols|gomilter.OptNoHeaderReply, want, gomilter.DataSize64K)
	if err != nil || got != Protocols|gomilter.OptNoHeaderReply {
		t.Errorf("MTA with only the header no-reply flag: protocol %v (err %v)", got, err)
	}
	// What stormguard needs is still required.
	if _, _, _, _, err := negotiateOffered(6, 6, gomilter.OptAddHeader, gomilter.OptAddHeader, NoReplies, want, gomilter.DataSize64K); err == nil {
		t.Error("MTA that sends bodies and unknown commands: negotiated, want an error")
	}
}

// QuickAck sets TCP_QUICKACK on a TCP connection, again after every read,
// and leaves a unix socket alone.
func TestQuickAck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := QuickAck(raw)
	defer c.Close()
	q, ok := c.(*quickAckConn)
	if !ok {
		t.Fatalf("QuickAck of a TCP connection returned a %T", c)
	}
	quick := func() int {
		var v int
		_ = q.rc.Control(func(fd uintptr) { v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if quick() != 1 {
		t.Error("TCP_QUICKACK not set on the accepted connection")
	}
	// A reply right after a read puts Linux back in delayed-ACK
	// ("pingpong") mode, which TCP_QUICKACK reads as 0; the next read
	// must set it again.
	left := 0
	for i := range 3 {
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if quick() != 1 {
			t.Errorf("read %d: TCP_QUICKACK not set again", i+1)
		}
		if _, err := c.Write([]byte("y")); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if quick() == 0 {
			left++
		}
	}
	t.Logf("quick-ACK mode left after %d of 3 replies", left)

	dir := t.TempDir()
	uln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	uc, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if got := QuickAck(uc); got != uc {
		t.Errorf("QuickAck of a unix socket returned a %T, want it unchanged", got)
	}
}

// recordingListener keeps the raw connections it accepts.
type recordingListener struct {
	net.Listener
	conns chan *net.TCPConn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.conns <- c.(*net.TCPConn)
	}
	return c, err
}

// The server's own connections get quick ACKs, set again after each read
// (the wrappers between the socket and the session must not hide the
// socket). After its reply to the negotiation Linux is in delayed-ACK
// ("pingpong") mode, which TCP_QUICKACK reads as 0. Reading the next,
// unanswered, event sets it again at once; without QuickAck only the
// delayed-ACK timer ends that mode, never less than 40 ms later. So the
// test passes if one of five sessions sees quick ACKs within 40 ms.
func TestServerConnectionsQuickAck(t *testing.T) {
	f, err := NewFilter(testConfig(), store.NewMemory(), nil, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("inet:127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingListener{Listener: ln, conns: make(chan *net.TCPConn, 1)}
	srv := NewServer(f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(rec) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}()
	var took []time.Duration
	for range 5 {
		d := quickAckAfterEvent(t, ln.Addr().String(), rec.conns)
		if d < 40*time.Millisecond {
			return
		}
		took = append(took, d)
	}
	t.Fatalf("quick ACKs set again %v after an unanswered event, in five sessions: not by the server", took)
}

// quickAckAfterEvent opens a session, sends CONNECT (which the server does
// not answer) and returns how long the server's socket took to be in
// quick-ACK mode again.
func quickAckAfterEvent(t *testing.T, addr string, conns chan *net.TCPConn) time.Duration {
	s, err := gomilter.NewClient("tcp", addr).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw := <-conns
	rc, err := raw.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	quick := func() int {
		var v int
		var gerr error
		_ = rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
	start := time.Now()
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 25000, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for quick() != 1 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("TCP_QUICKACK not set 10 s after an unanswered event")
		}
		time.Sleep(time.Millisecond) // the server reads the packet in its own goroutine
	}
	return time.Since(start)
}
