package identity

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Trip is one round trip on one connection to Redis: the commands a client
// sent while it had no reply outstanding, up to the reply to the last of
// them. A pipeline is one trip; a Cluster client's pipeline to three
// masters is three trips (on three connections) that overlap in time.
type Trip struct {
	Owner  string // the process that opened the connection (Recorder.Own), or "other"
	Conn   int    // the connection's number, unique in the Recorder
	Server string // the Redis server behind the proxy
	Start  time.Time
	End    time.Time
	Cmds   []string // each command's first words, lower case name: "evalsha <sha> 6 stormguard:{t}:replies"
	Errs   []string // error replies' codes (NOSCRIPT, MOVED, ...)
}

// Names is the trip's command names joined with "+": "evalsha+set+set".
func (t Trip) Names() string {
	n := make([]string, len(t.Cmds))
	for i, c := range t.Cmds {
		n[i], _, _ = strings.Cut(c, " ")
	}
	s := strings.Join(n, "+")
	if len(t.Errs) > 0 {
		s += "(" + strings.Join(t.Errs, ",") + ")"
	}
	return s
}

// Recorder collects the trips of one or more proxies and knows which
// process each connection belongs to.
type Recorder struct {
	// Delay holds the last reply of each trip until Delay after the trip
	// began, as a Redis farther away would: requests sent together (a
	// Cluster pipeline to several masters) then surely overlap, however
	// late a loaded machine schedules one of them, and a request that
	// waited for another's reply surely starts after it (Rounds). Set it
	// before the first connection.
	Delay time.Duration

	owning sync.Mutex // held while a process is started and registered (Own)

	mu     sync.Mutex
	owners map[int]string // pid -> name
	trips  []Trip
	conns  int
	errs   []error // connections that ended on a protocol error
}

func NewRecorder() *Recorder { return &Recorder{owners: map[int]string{}} }

// Own starts a process with start and registers its pid under name before
// any connection it opens is attributed: a connection accepted meanwhile
// waits for the registration.
func (r *Recorder) Own(name string, start func() (pid int, err error)) error {
	r.owning.Lock()
	defer r.owning.Unlock()
	pid, err := start()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.owners[pid] = name
	r.mu.Unlock()
	return nil
}

// Trips returns the trips of owner that started in [from, to], by start.
func (r *Recorder) Trips(owner string, from, to time.Time) []Trip {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Trip
	for _, t := range r.trips {
		if t.Owner == owner && !t.Start.Before(from) && !t.Start.After(to) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Trip) int { return a.Start.Compare(b.Start) })
	return out
}

// Errors returns the protocol errors that ended connections.
func (r *Recorder) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

func (r *Recorder) add(t Trip) {
	r.mu.Lock()
	r.trips = append(r.trips, t)
	r.mu.Unlock()
}

// owner names the process at the other end of c, a loopback connection
// accepted by a proxy: the process holding the socket whose local port is
// c's remote port (Linux: /proc/net/tcp and /proc/PID/fd).
func (r *Recorder) owner(c net.Conn) string {
	r.owning.Lock() // a process being started is registered first
	r.owning.Unlock()
	ra, ok1 := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return "other"
	}
	inode := socketInode(ra.Port, la.Port)
	if inode == "" {
		return "other"
	}
	r.mu.Lock()
	pids := make(map[int]string, len(r.owners))
	for p, n := range r.owners {
		pids[p] = n
	}
	r.mu.Unlock()
	want := "socket:[" + inode + "]"
	for pid, name := range pids {
		fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name()); err == nil && l == want {
				return name
			}
		}
	}
	return "other"
}

// socketInode finds, in /proc/net/tcp and tcp6, the socket whose local
// port is local and remote port remote, and returns its inode.
func socketInode(local, remote int) string {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || hexPort(fs[1]) != local || hexPort(fs[2]) != remote {
				continue
			}
			fh.Close()
			return fs[9]
		}
		fh.Close()
	}
	return ""
}

func hexPort(addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(p, 16, 32)
	if err != nil {
		return -1
	}
	return int(n)
}

// Proxy forwards loopback TCP connections to one Redis server and records
// every round trip on them in its Recorder.
type Proxy struct {
	Addr    string // where clients connect: 127.0.0.1:PORT
	backend string
	rec     *Recorder
	ln      net.Listener

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to backend.
func NewProxy(rec *Recorder, backend string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), backend: backend, rec: rec, ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	return p, nil
}

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Close stops accepting, cuts every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// conn is the state of one proxied connection: the trip in progress and
// how many of its commands still wait for a reply. The tap holds back the
// last byte of every message until it has been noted here, so a reply
// never overtakes its command and a client never has its answer before
// its trip is recorded.
type conn struct {
	rec         *Recorder
	mu          sync.Mutex
	trip        *Trip
	outstanding int
	base        Trip // owner, number, server
}

func (p *Proxy) serve(c net.Conn) {
	owner := p.rec.owner(c)
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, b) {
		c.Close()
		b.Close()
		return
	}
	p.rec.mu.Lock()
	p.rec.conns++
	st := &conn{rec: p.rec, base: Trip{Owner: owner, Conn: p.rec.conns, Server: p.backend}}
	p.rec.mu.Unlock()

	done := make(chan struct{})
	go func() { // replies: server to client
		defer close(done)
		t := newTap(b, c)
		for {
			m, err := t.read(false)
			if err != nil {
				st.fail(err)
				c.Close()
				return
			}
			if !m.push {
				st.reply(m)
			}
		}
	}()
	t := newTap(c, b) // commands: client to server
	for {
		m, err := t.read(true)
		if err != nil {
			st.fail(err)
			break
		}
		st.command(m)
	}
	b.Close()
	<-done
}

// command notes a command read whole.
func (s *conn) command(m message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trip == nil {
		t := s.base
		t.Start = m.at
		s.trip = &t
	}
	args := slices.Clone(m.args)
	if len(args) > 0 {
		args[0] = strings.ToLower(args[0])
	}
	s.trip.Cmds = append(s.trip.Cmds, strings.Join(args, " "))
	s.outstanding++
}

// reply notes a reply; the last one of a trip records the trip, after
// holding it until the Recorder's Delay has passed since the trip began.
func (s *conn) reply(m message) {
	s.mu.Lock()
	if s.trip == nil {
		s.mu.Unlock()
		return // nothing was asked: not a reply to count
	}
	if m.err != "" {
		s.trip.Errs = append(s.trip.Errs, m.err)
	}
	s.outstanding--
	if s.outstanding > 0 {
		s.mu.Unlock()
		return
	}
	t := *s.trip
	s.trip = nil
	s.mu.Unlock()
	if d := time.Until(t.Start.Add(s.rec.Delay)); d > 0 {
		time.Sleep(d) // the simulated distance to Redis
	}
	t.End = time.Now()
	s.rec.add(t)
}

// fail notes a connection that ended on anything but a close.
func (s *conn) fail(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	var op *net.OpError
	if errors.As(err, &op) { // reset by the peer, or closed under the reader
		return
	}
	s.rec.mu.Lock()
	s.rec.errs = append(s.rec.errs, fmt.Errorf("connection %d (%s): %w", s.base.Conn, s.base.Owner, err))
	s.rec.mu.Unlock()
}

// Rounds is how many sequential round trips trips (one message's, sorted
// by start) cost: trips that overlap in time (a Cluster pipeline's, one
// per master, sent together) make one round. With the Recorder's Delay
// well above the machine's scheduling delays this does not depend on
// timing: a trip lasts at least Delay, trips sent together start within
// a scheduling delay of each other, and a trip that needed another's
// reply starts after that reply was released (its End).
func Rounds(trips []Trip) int {
	n := 0
	var end time.Time
	for _, t := range trips {
		if n == 0 || t.Start.After(end) {
			n++
			end = t.End
			continue
		}
		if t.End.After(end) {
			end = t.End
		}
	}
	return n
}

// Background reports whether a trip is none of a message's business: a
// connection's handshake, the Cluster client's topology reads, the
// refresher's reads of the site settings (lists, list policies, exempt
// senders, posters, mode) or the report recorder's writes of queue ids and
// history. Such trips happen on their own timers; one that falls in a
// message's window is shown apart, not counted for the message.
func Background(t Trip, prefix string) bool {
	for _, c := range t.Cmds {
		f := strings.Fields(c)
		if len(f) == 0 {
			return false
		}
		switch f[0] {
		case "hello", "auth", "select", "client", "cluster", "command", "readonly", "ping", "info":
			continue
		case "multi", "exec", "rpush", "ltrim", "pexpire", "set", "zadd", "zremrangebyrank", "zrem", "get", "del", "zrange", "zcard", "zrangebyscore", "zremrangebyscore":
			// the recorder's queue ids and history (keys ...:queued,
			// ...:history, stormguard:history), else the message's own
			if len(f) > 1 && (strings.HasSuffix(f[1], ":queued") || strings.HasSuffix(f[1], ":history") || f[1] == prefix+"history") {
				continue
			}
			if f[0] == "multi" || f[0] == "exec" {
				continue
			}
			if f[0] == "get" && len(f) > 1 && f[1] == prefix+"mode" {
				continue
			}
			return false
		case "hscan", "sscan", "hgetall", "smembers", "hlen", "scard":
			if len(f) > 1 && slices.Contains([]string{"lists", "listpolicy", "exempt", "posters"}, strings.TrimPrefix(f[1], prefix)) {
				continue
			}
			return false
		default:
			return false
		}
	}
	return true
}
