package milter

import (
	"net"
	"syscall"
)

// QuickAck makes a TCP connection acknowledge what it receives at once
// (Linux TCP_QUICKACK) instead of delaying the ACK up to 40 ms in the hope
// of carrying it on a reply; other connections (unix sockets) are returned
// as they are.
//
// Why: stormguard does not reply to the events it only records (Protocols,
// NoReplies), and Postfix keeps Nagle on for its milter connections. A
// second small write from Postfix with no reply in between then waits for
// the milter's delayed ACK: 40 ms per message, 15 against 100-140 msg/s at
// concurrency 1 (bench/results/history.md). Linux leaves quick-ACK mode on its
// own (after an idle period, or when it sees an interactive exchange), so
// it is set again after every read: one setsockopt, under a microsecond.
func QuickAck(c net.Conn) net.Conn {
	if _, ok := c.LocalAddr().(*net.TCPAddr); !ok {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{Conn: c, rc: rc}
	q.arm()
	return q
}

// QuickAckListener wraps ln so that every connection it accepts goes
// through QuickAck.
func QuickAckListener(ln net.Listener) net.Listener { return quickAckListener{ln} }

type quickAckListener struct{ net.Listener }

func (l quickAckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return QuickAck(c), nil
}

// Unwrap returns the listener QuickAckListener wrapped.
func (l quickAckListener) Unwrap() net.Listener { return l.Listener }

type quickAckConn struct {
	net.Conn
	rc syscall.RawConn
}

// arm sets TCP_QUICKACK; an error (the connection closed) shows on the
// next read or write, where the session handles it.
func (c *quickAckConn) arm() {
	_ = c.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.arm()
	return n, err
}
