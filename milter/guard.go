package milter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
)

// maxPacket bounds one milter packet. stormguard never asks for the body, so
// the largest packet it expects is one header (Postfix caps a header at
// header_size_limit, 100 KiB by default) or a macro list.
const maxPacket = 4 << 20

// guardListener wraps every accepted connection in a guardConn.
//
// go-milter allocates a packet's declared length before reading it; the
// guard hands it a packet only when all its bytes are here, and its own
// buffer grows with them (readGrowing).
//
// go-milter has no recover in its session goroutines and indexes packets
// without checking their length: a zero-length packet, or a connect, MAIL or
// RCPT packet without its NUL terminator, panics and takes the whole daemon
// down with it. The guard reads the milter framing itself and closes the
// connection before such a packet reaches the library.
type guardListener struct {
	net.Listener
	log      *slog.Logger
	rejected *atomic.Uint64
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, r: bufio.NewReaderSize(c, 4096), log: l.log, rejected: l.rejected}, nil
}

// guardConn passes only well-formed milter packets to its reader.
type guardConn struct {
	net.Conn
	r        *bufio.Reader // the MTA often sends several packets at once: one read for all of them
	log      *slog.Logger
	rejected *atomic.Uint64
	buf      []byte // validated bytes not yet read
	err      error  // sticky error once a bad packet was seen
}

func (c *guardConn) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if err := c.fill(); err != nil {
			c.err = err
			return 0, err
		}
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// fill reads one whole packet, validates it and queues it for Read.
func (c *guardConn) fill() error {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return err
	}
	length := binary.BigEndian.Uint32(hdr[:])
	if length == 0 || length > maxPacket {
		return c.bad(fmt.Errorf("packet length %d out of range 1..%d", length, maxPacket))
	}
	pkt, err := readGrowing(c.r, hdr[:], 4+int(length))
	if err != nil {
		return err
	}
	if err := validPacket(pkt[4], pkt[5:]); err != nil {
		return c.bad(err)
	}
	c.buf = pkt
	return nil
}

// firstChunk is what a packet's buffer starts at. Most packets (macros,
// addresses, headers) fit.
const firstChunk = 4 << 10

// readGrowing reads r until the packet that starts with head is total bytes
// long. Its buffer grows (doubling, capped at total) with the bytes that
// arrive, not with the length the peer declared: a packet that declares
// 4 MiB and stalls holds what it sent.
func readGrowing(r io.Reader, head []byte, total int) ([]byte, error) {
	pkt := append(make([]byte, 0, min(total, firstChunk)), head...)
	for len(pkt) < total {
		if len(pkt) == cap(pkt) {
			pkt = slices.Grow(pkt, min(cap(pkt), total-len(pkt)))
		}
		n, err := r.Read(pkt[len(pkt):min(cap(pkt), total)])
		pkt = pkt[:len(pkt)+n]
		if err != nil && len(pkt) < total {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return pkt, nil
}

func (c *guardConn) bad(err error) error {
	if c.rejected != nil {
		c.rejected.Add(1)
	}
	if c.log != nil {
		c.log.Warn("malformed milter packet, closing the connection", "remote", c.RemoteAddr().String(), "err", err)
	}
	_ = c.Conn.Close()
	return fmt.Errorf("milter guard: %w", err)
}

// validPacket checks the structure that go-milter indexes without checking.
func validPacket(code byte, data []byte) error {
	switch code {
	case 'C': // connect: hostname NUL family [port address NUL]
		i := bytes.IndexByte(data, 0)
		if i < 0 || i+1 >= len(data) {
			return fmt.Errorf("connect packet without hostname terminator or family")
		}
	case 'M', 'R': // MAIL / RCPT: address NUL [esmtp args]
		if bytes.IndexByte(data, 0) < 0 {
			return fmt.Errorf("%c packet without NUL terminator", code)
		}
	case 'O', 'D', 'H', 'L', 'N', 'B', 'E', 'A', 'T', 'K', 'U', 'Q':
		// The library checks these itself and answers with an error.
	default:
		return fmt.Errorf("unknown milter command %q", code)
	}
	return nil
}
