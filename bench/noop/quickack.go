package noop

import (
	"net"
	"syscall"
)

// QuickAck wraps ln so that every accepted TCP connection acknowledges
// what it receives at once (Linux TCP_QUICKACK) instead of delaying the
// ACK up to 40 ms in the hope of riding it on a reply. Linux leaves quick
// ACK mode on its own, so it is set again after every read. The
// experiment behind it: a milter that does not reply to some events
// leaves Postfix, which keeps Nagle on for its milter connections, waiting
// for that delayed ACK before its next small write (docs/performance.md).
func QuickAck(ln net.Listener) net.Listener { return quickAckListener{ln} }

type quickAckListener struct{ net.Listener }

func (l quickAckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil // a unix socket has no ACKs to delay
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.arm()
	return q, nil
}

type quickAckConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c *quickAckConn) arm() {
	_ = c.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.arm()
	return n, err
}
