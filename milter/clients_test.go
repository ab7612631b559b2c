package milter_test

// The client catalogue against the real filter: reply-all storms whose
// replies are written by each real mail client (package sim's catalogue),
// answering the original or each the reply before, must be stopped at the
// same reply whatever the client wrote: max_replies 10, so replies 1..10
// are accepted and the 11th is refused, on the memory store, on one Redis
// shared by three nodes and on a three-master Redis Cluster shared by
// three nodes. It is a separate package so that it can import sim, which
// imports milter.

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/sim"
	"github.com/stormguard/stormguard/store"
)

const (
	clientList     = "all-staff@example.org"
	clientAudience = 20000 // a large audience, far below any delivery budget
	clientReplies  = 12    // 10 accepted, the 11th refused by max_replies, the 12th by the block
	clientNodes    = 3     // nodes sharing a Redis
)

// clientConfig: max_replies 10 decides; the delivery budget is off (0), so
// it cannot be the rule that refuses. The store timeout is long, so that a
// slow call under -race is never a store error.
func clientConfig() milter.Config {
	cfg := milter.Defaults()
	cfg.Policy.Limits.MaxReplies = 10
	cfg.Policy.Limits.DeliveryBudget = 0
	cfg.Lists = map[string]int{clientList: clientAudience}
	cfg.StoreTimeout = 5 * time.Second
	return cfg
}

// decisions is the observer of every node: each decision by the message's
// Message-ID.
type decisions struct {
	mu   sync.Mutex
	byID map[string]milter.Decision
	errs []error
}

func (d *decisions) Decided(dec milter.Decision, m *milter.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byID[strings.TrimSpace(m.Headers.MessageID)] = dec
}

func (d *decisions) StoreCall(op string, _ time.Duration, err error) {
	if err != nil {
		d.mu.Lock()
		d.errs = append(d.errs, fmt.Errorf("%s: %w", op, err))
		d.mu.Unlock()
	}
}

func (d *decisions) of(id string) (milter.Decision, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dec, ok := d.byID[id]
	return dec, ok
}

// startClientNodes starts one real milter server per store in sts, each
// with its own Filter, all reporting to obs; it returns their addresses.
func startClientNodes(t *testing.T, sts []store.Store, obs *decisions) []string {
	t.Helper()
	var addrs []string
	for _, st := range sts {
		f, err := milter.NewFilter(clientConfig(), st, nil, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.SetObserver(obs)
		ln, err := milter.Listen("inet:127.0.0.1:0", 0)
		if err != nil {
			t.Fatal(err)
		}
		srv := milter.NewServer(f)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// sendMail hands one message to the milter at addr as Postfix does and
// returns the SMTP code it got: 250 accepted, 550 or 451 refused.
func sendMail(addr, from string, rcpts []string, headers sim.Mail) (uint16, error) {
	s, err := gomilter.NewClient("tcp", addr, gomilter.WithReadTimeout(10*time.Second), gomilter.WithWriteTimeout(10*time.Second)).
		Session(gomilter.NewMacroBag())
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 25000, "192.0.2.1"); err != nil {
		return 0, err
	}
	if _, err := s.Helo("client.example.net"); err != nil {
		return 0, err
	}
	if _, err := s.Mail(from, ""); err != nil {
		return 0, err
	}
	for _, r := range rcpts {
		if _, err := s.Rcpt(r, ""); err != nil {
			return 0, err
		}
	}
	if _, err := s.DataStart(); err != nil {
		return 0, err
	}
	for _, h := range headers {
		if _, err := s.HeaderField(h.Name, " "+h.Value, nil); err != nil {
			return 0, fmt.Errorf("header %s: %w", h.Name, err)
		}
	}
	act, err := s.HeaderEnd()
	if err != nil {
		return 0, fmt.Errorf("end of headers: %w", err)
	}
	if !act.StopProcessing() && act.Type != gomilter.ActionAccept {
		if _, act, err = s.BodyReadFrom(strings.NewReader("body\r\n")); err != nil {
			return 0, fmt.Errorf("end of message: %w", err)
		}
	}
	switch act.Type {
	case gomilter.ActionReject, gomilter.ActionRejectWithCode, gomilter.ActionTempFail:
		return act.SMTPCode, nil
	}
	return 250, nil
}

// clientStorm is one storm: an original and clientReplies reply-alls to the
// list, message i written by client(i), each reply answering the original
// (star) or the last delivered message (chain).
type clientStorm struct {
	name   string
	client func(i int) sim.Client
	chain  bool
}

// stormResult is what a storm got.
type stormResult struct {
	codes   []uint16 // per reply (index 0 is reply 1)
	rules   []policy.Rule
	threads []policy.ThreadID // distinct, in order of first use, the original's first
	path    []int             // per reply, the index in threads of the thread it was counted in
	splits  []string          // the replies counted in another thread than the message they answer
}

// escaped is the first reply (1-based) counted outside the original's
// thread, 0 when none was.
func (r stormResult) escaped() int {
	for i, th := range r.path {
		if th != 0 {
			return i + 1
		}
	}
	return 0
}

// pathString is the thread of each reply by its index in threads: "0 0 1 2".
func (r stormResult) pathString() string {
	s := make([]string, len(r.path))
	for i, th := range r.path {
		s[i] = fmt.Sprint(th)
	}
	return strings.Join(s, " ")
}

// firstWrong is the first reply (1-based) whose answer is not the one
// max_replies 10 calls for, and a description; 0 when all are right.
func (r stormResult) firstWrong() (int, string) {
	for i, code := range r.codes {
		n := i + 1
		switch {
		case n <= 10 && code != 250:
			return n, fmt.Sprintf("reply %d refused (%d, %s), want accepted", n, code, r.rules[i])
		case n == 11 && (code != 550 || r.rules[i] != policy.RuleMaxReplies):
			return n, fmt.Sprintf("reply 11 got %d (%s), want 550 by max_replies", code, r.rules[i])
		case n > 11 && code != 550:
			return n, fmt.Sprintf("reply %d got %d (%s), want 550 (blocked)", n, code, r.rules[i])
		}
	}
	return 0, ""
}

// refused is the first refused reply (1-based), 0 when none was.
func (r stormResult) refused() int {
	for i, code := range r.codes {
		if code != 250 {
			return i + 1
		}
	}
	return 0
}

// run sends the storm, message i through node i mod len(addrs).
func (s clientStorm) run(t *testing.T, addrs []string, obs *decisions, seed uint64) stormResult {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x636c69656e7473)) // "clients"
	at := time.Date(2016, 11, 14, 8, 29, 0, 0, time.UTC)
	slug := strings.NewReplacer(" ", "-", "/", "-").Replace(s.name)
	boss := "boss-" + slug + "@example.org"
	subject := "Budget 2027 for " + s.name // a subject of its own: no subject key shared between storms
	type sent struct {
		mail   sim.Mail
		from   string
		client string
		thread policy.ThreadID
	}
	orig := sent{s.client(0).Original(r, boss, subject, at), boss, s.client(0).Name, ""}
	var res stormResult
	decided := func(m sim.Mail) milter.Decision {
		dec, ok := obs.of(m.Get("Message-ID"))
		if !ok {
			t.Fatalf("%s: no decision observed for %s", s.name, m.Get("Message-ID"))
		}
		if !slices.Contains(res.threads, dec.Thread) {
			res.threads = append(res.threads, dec.Thread)
		}
		return dec
	}
	send := func(i int, m sent, rcpts []string) uint16 {
		hdrs := append(sim.Mail{{Name: "From", Value: "<" + m.from + ">"}, {Name: "To", Value: strings.Join(rcpts, ", ")}}, m.mail...)
		code, err := sendMail(addrs[i%len(addrs)], m.from, rcpts, hdrs)
		if err != nil {
			t.Fatalf("%s: message %d: %v", s.name, i, err)
		}
		return code
	}
	if code := send(0, orig, []string{clientList}); code != 250 {
		t.Fatalf("%s: the original got %d", s.name, code)
	}
	dec := decided(orig.mail)
	if dec.Rule != policy.RuleOriginal {
		t.Fatalf("%s: the original was decided %s, want original", s.name, dec.Rule)
	}
	orig.thread = dec.Thread
	last := orig // the last delivered message: what a chain's next reply answers
	for i := 1; i <= clientReplies; i++ {
		parent := orig
		if s.chain {
			parent = last
		}
		at = at.Add(time.Minute)
		from := fmt.Sprintf("replier-%d-%s@example.org", i, slug)
		reply := sent{s.client(i).Reply(r, from, parent.mail, at), from, s.client(i).Name, ""}
		rcpts := []string{clientList, boss}
		if parent.from != boss {
			rcpts = append(rcpts, parent.from)
		}
		code := send(i, reply, rcpts)
		dec := decided(reply.mail)
		reply.thread = dec.Thread
		if dec.Thread != parent.thread {
			res.splits = append(res.splits, fmt.Sprintf("reply %d (%s answering %s)", i, reply.client, parent.client))
		}
		res.codes = append(res.codes, code)
		res.rules = append(res.rules, dec.Rule)
		res.path = append(res.path, slices.Index(res.threads, dec.Thread))
		if code == 250 {
			last = reply
		}
	}
	return res
}

// clientStorms are the storms: for each client a star and a chain, then a
// mixed chain per starting client in which the clients rotate through the
// whole catalogue (the original by the client before the first replier),
// so that every client answers every other once and each is the 11th.
func clientStorms() []clientStorm {
	cs := sim.Clients()
	var storms []clientStorm
	for _, c := range cs {
		one := func(int) sim.Client { return c }
		storms = append(storms, clientStorm{c.Name + "/star", one, false}, clientStorm{c.Name + "/chain", one, true})
	}
	for k := range cs {
		storms = append(storms, clientStorm{"mixed/from-" + cs[k].Name, func(i int) sim.Client {
			return cs[(k+i-1+len(cs))%len(cs)]
		}, true})
	}
	return storms
}

// TestClientCatalogueStorms runs every storm on each store and reports,
// per storm, the threads its messages were counted in and the reply that
// was refused.
func TestClientCatalogueStorms(t *testing.T) {
	backends := []struct {
		name   string
		stores func(t *testing.T) []store.Store
	}{
		{"memory", func(*testing.T) []store.Store { return []store.Store{store.NewMemory()} }},
		{"redis", func(t *testing.T) []store.Store {
			return redisStores(t, store.RedisConfig{Addrs: []string{redisenv.Start(t)}, Timeout: 5 * time.Second})
		}},
		{"cluster", func(t *testing.T) []store.Store {
			return redisStores(t, store.RedisConfig{Addrs: redisenv.StartCluster(t)[:1], Cluster: true, Timeout: 5 * time.Second})
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			obs := &decisions{byID: map[string]milter.Decision{}}
			addrs := startClientNodes(t, b.stores(t), obs)
			var failed []string
			for n, s := range clientStorms() {
				res := s.run(t, addrs, obs, uint64(n)+1)
				wrong, why := res.firstWrong()
				t.Logf("%-28s %2d thread(s), replies' threads [%s], first refused: %s; threads %v; split off: %s", s.name, len(res.threads),
					res.pathString(), refusedString(res), res.threads, strings.Join(res.splits, ", "))
				if wrong != 0 {
					failed = append(failed, fmt.Sprintf("%s: %s; first reply outside the original's thread: %d; its %d messages were counted in %d threads; split off: %s",
						s.name, why, res.escaped(), clientReplies+1, len(res.threads), strings.Join(res.splits, ", ")))
				}
			}
			if len(obs.errs) > 0 {
				t.Errorf("store errors: %v", obs.errs)
			}
			if len(failed) > 0 {
				t.Errorf("%d of %d storms not stopped at the 11th reply:\n%s", len(failed), len(clientStorms()), strings.Join(failed, "\n"))
			}
		})
	}
}

// refusedString is the first refused reply and its rule, or "none".
func refusedString(r stormResult) string {
	if n := r.refused(); n > 0 {
		return fmt.Sprintf("reply %d (%s)", n, r.rules[n-1])
	}
	return "none"
}

// redisStores opens one client per node over rc, as the nodes of a site
// each do.
func redisStores(t *testing.T, rc store.RedisConfig) []store.Store {
	t.Helper()
	var sts []store.Store
	for range clientNodes {
		st, err := store.OpenRedis(rc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sts = append(sts, st)
	}
	return sts
}

// TestClientStormsCoverCatalogue: the storms above cover every client in
// each role, so a client added to the catalogue is tested without a
// change here.
func TestClientStormsCoverCatalogue(t *testing.T) {
	storms := clientStorms()
	n := len(sim.Clients())
	if len(storms) != 3*n {
		t.Fatalf("%d storms for %d clients, want %d", len(storms), n, 3*n)
	}
	var eleventh []string
	for _, s := range storms[2*n:] {
		eleventh = append(eleventh, s.client(11).Name)
	}
	slices.Sort(eleventh)
	var all []string
	for _, c := range sim.Clients() {
		all = append(all, c.Name)
	}
	slices.Sort(all)
	if !slices.Equal(eleventh, all) {
		t.Errorf("the 11th replies of the mixed chains are written by %v, want each client once", eleventh)
	}
}

// TestClientPairs: client C answering a reply written by client P, which
// answers a Gmail reply to the original (a References-carrying parent, so
// P's reply is the third generation), must be counted in the original's
// thread, for every pair. The log shows the matrix: "." both counted in
// the original's thread, "P" P's reply split off already, "C" only C's
// reply did.
func TestClientPairs(t *testing.T) {
	obs := &decisions{byID: map[string]milter.Decision{}}
	addrs := startClientNodes(t, []store.Store{store.NewMemory()}, obs)
	cs := sim.Clients()
	gmail, _ := sim.ClientNamed("gmail")
	r := rand.New(rand.NewPCG(1, 0x7061697273)) // "pairs"
	at := time.Date(2016, 11, 14, 8, 29, 0, 0, time.UTC)
	thread := func(m sim.Mail, from string, rcpts []string) policy.ThreadID {
		t.Helper()
		hdrs := append(sim.Mail{{Name: "From", Value: "<" + from + ">"}, {Name: "To", Value: strings.Join(rcpts, ", ")}}, m...)
		if _, err := sendMail(addrs[0], from, rcpts, hdrs); err != nil {
			t.Fatal(err)
		}
		dec, ok := obs.of(m.Get("Message-ID"))
		if !ok {
			t.Fatalf("no decision for %s", m.Get("Message-ID"))
		}
		return dec.Thread
	}
	var rows []string
	var bad []string
	header := fmt.Sprintf("%-19s", "P \\ C")
	for i := range cs {
		header += fmt.Sprintf(" %2d", i+1)
	}
	for i, p := range cs {
		row := fmt.Sprintf("%2d %-16s", i+1, p.Name)
		for _, c := range cs {
			tag := p.Name + "-" + c.Name
			boss := "boss-" + tag + "@example.org"
			rcpts := []string{clientList, boss}
			root := cs[0].Original(r, boss, "Pairs "+tag, at)
			want := thread(root, boss, []string{clientList})
			r1 := gmail.Reply(r, "a-"+tag+"@example.org", root, at.Add(time.Minute))
			t1 := thread(r1, "a-"+tag+"@example.org", rcpts)
			r2 := p.Reply(r, "b-"+tag+"@example.org", r1, at.Add(2*time.Minute))
			t2 := thread(r2, "b-"+tag+"@example.org", rcpts)
			r3 := c.Reply(r, "c-"+tag+"@example.org", r2, at.Add(3*time.Minute))
			t3 := thread(r3, "c-"+tag+"@example.org", rcpts)
			cell := "."
			switch {
			case t1 != want:
				t.Fatalf("%s: Gmail's reply to the original was counted in %s, not the original's %s", tag, t1, want)
			case t2 != want:
				cell = "P"
			case t3 != want:
				cell = "C"
				bad = append(bad, c.Name+" answering "+p.Name)
			}
			row += "  " + cell
		}
		rows = append(rows, row)
	}
	t.Logf("client C answering client P's reply to a Gmail reply to the original:\n%s\n%s", header, strings.Join(rows, "\n"))
	splitP := 0
	for _, row := range rows {
		splitP += strings.Count(row, "  P")
	}
	if splitP > 0 || len(bad) > 0 {
		t.Errorf("%d cells where P's reply split off, %d where C's did: %s", splitP, len(bad), strings.Join(bad, ", "))
	}
}
