package milter

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/store"
)

// chanListener hands the server connections made in the test.
type chanListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// FuzzMilterStream feeds arbitrary bytes to a real stormguard milter server,
// packet guard included. go-milter panics on some malformed packets and has
// no recover: a panic here would crash the fuzzer, so the target passes as
// long as the server survives every input.
func FuzzMilterStream(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0})
	f.Add(rawPacket('Z', nil))
	f.Add(append(negotiateAndHelo(), rawPacket('M', []byte("<a@b>"))...))
	f.Add(append(append([]byte{}, negotiate...), rawPacket('C', []byte("host\x00"))...))
	f.Add(append(negotiateAndHelo(), append(rawPacket('M', []byte("<a@b>\x00")), rawPacket('R', []byte("<all-staff@example.org>\x00"))...)...))
	f.Add(append(negotiateAndHelo(), append(rawPacket('L', []byte("Subject\x00Re: hi\x00")), rawPacket('N', nil)...)...))

	flt, err := NewFilter(testConfig(), store.NewMemory(), nil, discardLogger(), nil)
	if err != nil {
		f.Fatal(err)
	}
	ln := newChanListener()
	srv := NewServer(flt)
	go func() { _ = srv.Serve(ln) }()
	defer ln.Close()

	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		select {
		case ln.conns <- server:
		case <-time.After(5 * time.Second):
			t.Fatal("server stopped accepting")
		}
		drained := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, client)
			close(drained)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := client.Write(data); err != nil && !errors.Is(err, io.ErrClosedPipe) && !isTimeout(err) {
			t.Logf("write: %v", err)
		}
		client.Close()
		<-drained
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
