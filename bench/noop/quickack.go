package noop

import (
	"net"

	"github.com/stormguard/stormguard/milter"
)

// QuickAck wraps ln so that every accepted TCP connection acknowledges at
// once (milter.QuickAck, as stormguard's own listener does): the no-op
// with the no-reply flags stalls 40 ms per message without it.
func QuickAck(ln net.Listener) net.Listener { return quickAckListener{ln} }

type quickAckListener struct{ net.Listener }

func (l quickAckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return milter.QuickAck(c), nil
}

// Unwrap returns the listener QuickAck wrapped.
func (l quickAckListener) Unwrap() net.Listener { return l.Listener }
