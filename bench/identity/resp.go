package identity

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// The proxy forwards RESP (the Redis protocol, versions 2 and 3) one whole
// message at a time and parses it on the way, so that it knows where each
// command and each reply ends: a round trip is counted by commands and
// replies, never by how the bytes happened to be split into reads.

// tap reads RESP from src and copies every byte it consumes to dst.
// Whatever was consumed is flushed to dst before tap waits for more input
// (flushingReader), so the proxy holds nothing back that the other side
// could already act on, and a pipeline leaves it in one write as it came.
type tap struct {
	r *bufio.Reader
	w *bufio.Writer
}

// flushingReader flushes w before every read of the connection.
type flushingReader struct {
	src io.Reader
	w   *bufio.Writer
}

func (f flushingReader) Read(p []byte) (int, error) {
	if err := f.w.Flush(); err != nil {
		return 0, err
	}
	return f.src.Read(p)
}

func newTap(src io.Reader, dst io.Writer) *tap {
	w := bufio.NewWriterSize(dst, 64<<10)
	return &tap{r: bufio.NewReaderSize(flushingReader{src: src, w: w}, 64<<10), w: w}
}

// line reads one CRLF-terminated line, copies it and returns it without
// the CRLF. Lines longer than the buffer are copied whole and returned cut.
func (t *tap) line() ([]byte, error) {
	var head []byte
	for {
		b, err := t.r.ReadSlice('\n')
		if werr := t.hold(b); werr != nil {
			return nil, werr
		}
		if len(head) < maxLine {
			head = append(head, b[:min(len(b), maxLine-len(head))]...)
		}
		switch {
		case err == nil:
			if n := len(head); n > 0 && head[n-1] == '\n' {
				head = head[:n-1]
			}
			if n := len(head); n > 0 && head[n-1] == '\r' {
				head = head[:n-1]
			}
			return head, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// maxLine is how much of a line line returns: RESP's length and type
// lines are short; only simple strings and errors run longer, and of those
// only the first word is used.
const maxLine = 4096

// bulk copies a bulk payload of n bytes and its CRLF, returning the
// payload when keep is set.
func (t *tap) bulk(n int, keep bool) ([]byte, error) {
	if !keep {
		if _, err := io.CopyN(t.w, t.r, int64(n)); err != nil {
			return nil, err
		}
		var crlf [2]byte
		if _, err := io.ReadFull(t.r, crlf[:]); err != nil {
			return nil, err
		}
		return nil, t.hold(crlf[:])
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(t.r, b); err != nil {
		return nil, err
	}
	return b[:n], t.hold(b)
}

// hold copies b to the buffer, its last byte surely into the buffer: a
// large write goes straight to the connection, but the byte that
// completes it waits for the next flush.
func (t *tap) hold(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := t.w.Write(b[:len(b)-1]); err != nil {
		return err
	}
	return t.w.WriteByte(b[len(b)-1])
}

// message is one top-level RESP message as the proxy saw it.
type message struct {
	at   time.Time // when its first line arrived
	args []string  // a command's words (request side, first maxArgs)
	err  string    // an error reply's first word (NOSCRIPT, MOVED, ...)
	push bool      // a RESP3 push (out of band: answers no command)
}

// maxArgs is how many words of a command are kept: the name and the first
// keys, enough to name what the command touched.
const maxArgs = 4

// maxKeep bounds a kept word.
const maxKeep = 96

// read reads, copies and describes one top-level message. On the request
// side (args) a command's words are kept; inline commands (a bare line,
// as typed into telnet) are one word each. The message's last byte stays
// in the buffer until the next read (hold), so the other side cannot act
// on the message before the caller has noted it.
func (t *tap) read(args bool) (message, error) {
	l, err := t.line()
	if err != nil {
		return message{}, err
	}
	m := message{at: time.Now()}
	if len(l) == 0 {
		return m, errors.New("resp: empty line")
	}
	switch l[0] {
	case '-', '!':
		if l[0] == '-' {
			m.err = firstWord(l[1:])
		}
	case '>':
		m.push = true
	}
	if args && l[0] == '*' {
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil {
			return m, fmt.Errorf("resp: array header %q", l)
		}
		for i := 0; i < n; i++ {
			w, err := t.word(i < maxArgs)
			if err != nil {
				return m, err
			}
			if i < maxArgs {
				m.args = append(m.args, w)
			}
		}
		return m, nil
	}
	if args && l[0] != '*' && l[0] != '$' {
		m.args = []string{firstWord(l)} // inline command
		return m, nil
	}
	if l[0] == '!' { // a blob error: its code is the payload's first word
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil {
			return m, fmt.Errorf("resp: length %q", l)
		}
		b, err := t.bulk(n, true)
		m.err = firstWord(b)
		return m, err
	}
	return m, t.rest(l)
}

// word reads one element of a command array (a bulk string; anything else
// is skipped whole) and returns it when keep is set.
func (t *tap) word(keep bool) (string, error) {
	l, err := t.line()
	if err != nil {
		return "", err
	}
	if len(l) == 0 || l[0] != '$' {
		return "", t.rest(l)
	}
	n, err := strconv.Atoi(string(l[1:]))
	if err != nil {
		return "", fmt.Errorf("resp: bulk header %q", l)
	}
	if n < 0 {
		return "", nil
	}
	b, err := t.bulk(n, keep)
	if len(b) > maxKeep {
		b = b[:maxKeep]
	}
	return string(b), err
}

// rest copies the remainder of a value whose first line is l.
func (t *tap) rest(l []byte) error {
	if len(l) == 0 {
		return errors.New("resp: empty line")
	}
	switch l[0] {
	case '+', '-', ':', ',', '#', '_', '(':
		return nil // the line is the whole value
	case '$', '!', '=':
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil {
			return fmt.Errorf("resp: length %q", l)
		}
		if n < 0 { // RESP2 null bulk
			return nil
		}
		_, err = t.bulk(n, false)
		return err
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil {
			return fmt.Errorf("resp: aggregate header %q", l)
		}
		if l[0] == '%' || l[0] == '|' {
			n *= 2 // maps and attributes hold key-value pairs
		}
		for i := 0; i < n; i++ { // n < 0: RESP2 null array, nothing follows
			el, err := t.line()
			if err != nil {
				return err
			}
			if err := t.rest(el); err != nil {
				return err
			}
		}
		if l[0] == '|' { // an attribute precedes the value it describes
			el, err := t.line()
			if err != nil {
				return err
			}
			return t.rest(el)
		}
		return nil
	}
	return fmt.Errorf("resp: unknown type %q", l[0])
}

func firstWord(b []byte) string {
	for i, c := range b {
		if c == ' ' {
			return string(b[:i])
		}
	}
	return string(b)
}
