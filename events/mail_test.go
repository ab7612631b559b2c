package events

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

func mailConfig(sink string) Config {
	c := Defaults()
	c.Mail.To = []string{"admin@example.org", "oncall@example.org"}
	c.Mail.From = "stormguard@mx1.example.org"
	c.Mail.SMTP = sink
	c.Mail.Timeout = 5 * time.Second
	c.Mail.OncePer = time.Hour
	return c
}

func startMailNotifier(t *testing.T, c Config) *Notifier {
	t.Helper()
	n, err := NewNotifier(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n.Close(ctx) // abandons what an unreachable server still holds
	})
	return n
}

// closeMail delivers everything queued, then returns the mail outlet's
// counters.
func closeMail(t *testing.T, n *Notifier) OutletStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !n.Close(ctx) {
		t.Fatal("notifier did not drain")
	}
	for _, o := range n.Stats().Outlets {
		if o.Name == "mail" {
			return o
		}
	}
	t.Fatal("no mail outlet")
	return OutletStats{}
}

func decodedBody(t *testing.T, m smtpenv.SinkMessage) string {
	t.Helper()
	if m.Header("Content-Transfer-Encoding") != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding %q", m.Header("Content-Transfer-Encoding"))
	}
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(m.Body())))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostileSubject tries to end the Subject header and add a Bcc and a body,
// and carries a terminal escape and non-ASCII text.
const hostileSubject = "Hi\r\nBcc: victim@evil.example\r\n\r\nfake body \x1b[31mred\x1b[0m <script>x</script> Grüße"

// TestMailNotice: a storm event becomes one plain notice to the admins,
// with RFC 5322 headers that mark it automatic, the thread, the counts and
// how to release it; a hostile subject adds no header or recipient.
func TestMailNotice(t *testing.T) {
	sink := smtpenv.StartSink(t)
	c := mailConfig(sink.Addr)
	c.Mail.RedisPrefix = "stormguard:"
	c.Mail.ReportURL = "http://mx1.example.org:9357/"
	n := startMailNotifier(t, c)
	n.Emit(Event{Type: TypeStorm, Thread: "3f9a0c1d2b4e5f60", Subject: hostileSubject, Sender: "user11@example.org",
		Rule: "max_replies", Action: "reject", Audience: 3000, Count: 11, Delivered: 33000, BlockFor: "6h0m0s", Node: "mx1"})
	st := closeMail(t, n)
	if st.Sent != 1 || st.Failed != 0 {
		t.Fatalf("stats %+v, want 1 sent", st)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "stormguard@mx1.example.org" || len(m.To) != 2 || !m.HasRcpt("admin@example.org") || !m.HasRcpt("oncall@example.org") {
		t.Errorf("envelope from %q to %v", m.From, m.To)
	}
	for name, want := range map[string]string{
		"From": "stormguard <stormguard@mx1.example.org>", "To": "admin@example.org, oncall@example.org",
		"Auto-Submitted": "auto-generated", "Precedence": "bulk", "MIME-Version": "1.0",
		"Content-Type": "text/plain; charset=utf-8", "X-Stormguard-Thread": "3f9a0c1d2b4e5f60",
	} {
		if got := m.Header(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if _, err := time.Parse(time.RFC1123Z, m.Header("Date")); err != nil {
		t.Errorf("Date %q: %v", m.Header("Date"), err)
	}
	if id := m.Header("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mx1.example.org>") {
		t.Errorf("Message-ID %q", id)
	}
	if len(m.Headers("Bcc")) != 0 || strings.Contains(string(m.Data), "\nBcc:") {
		t.Errorf("the subject injected a Bcc header:\n%s", m.Data)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header("Subject"))
	if err != nil {
		t.Fatalf("Subject %q: %v", m.Header("Subject"), err)
	}
	if want := "stormguard: reply-all storm stopped in thread 3f9a0c1d2b4e5f60: Hi Bcc: victim@evil.example fake body [31mred [0m <script>x</script> Grüße"; subj != want {
		t.Errorf("Subject decodes to %q, want %q", subj, want)
	}
	body := decodedBody(t, m)
	for _, want := range []string{
		"Thread:       3f9a0c1d2b4e5f60",
		"Limit:        max_replies crossed: 11 replies to everyone counted, 33000 deliveries",
		"the reply by user11@example.org to 3000 mailboxes",
		"Blocked for:  6h0m0s",
		"stormguard allow 3f9a0c1d2b4e5f60 --for 2h",
		"redis-cli SET 'stormguard:{3f9a0c1d2b4e5f60}:override' allow EX 7200",
		"Report page: http://mx1.example.org:9357/",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "\x1b") || strings.Contains(body, "\nBcc:") || !strings.Contains(body, "Subject:      Hi  Bcc: victim@evil.example    fake body") {
		t.Errorf("body carries the subject's escapes or line breaks:\n%q", body)
	}
	t.Logf("notice as received:\n%s", m.Data)
}

// TestMailOncePerThread: two crossings of one thread (two nodes' events,
// or a re-crossing) give one notice; another thread gets its own. With a
// shared Claim, a thread another node claimed gets none from this one.
func TestMailOncePerThread(t *testing.T) {
	sink := smtpenv.StartSink(t)
	c := mailConfig(sink.Addr)
	var mu sync.Mutex
	claimed := map[string]bool{"c1aimedelsewhere": true}
	c.Mail.Claim = func(_ context.Context, thread string, ttl time.Duration) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if ttl != time.Hour {
			t.Errorf("claim ttl %s, want notify.once_per", ttl)
		}
		if claimed[thread] {
			return false, nil
		}
		claimed[thread] = true
		return true, nil
	}
	n := startMailNotifier(t, c)
	for _, th := range []string{"aaaa", "aaaa", "bbbb", "aaaa", "c1aimedelsewhere"} {
		n.Emit(Event{Type: TypeStorm, Thread: th})
	}
	n.Emit(Event{Type: TypeBlocked, Thread: "aaaa"}) // not mailed
	st := closeMail(t, n)
	if st.Sent != 2 || st.Duplicate != 3 || st.Failed != 0 {
		t.Errorf("stats %+v, want 2 sent, 3 duplicates", st)
	}
	got := map[string]int{}
	for _, m := range sink.Messages() {
		got[m.Header("X-Stormguard-Thread")]++
	}
	if len(got) != 2 || got["aaaa"] != 1 || got["bbbb"] != 1 {
		t.Errorf("notices per thread %v, want one each for aaaa and bbbb", got)
	}
}

// TestMailRateLimit: past max_per_hour, notices are dropped and counted.
func TestMailRateLimit(t *testing.T) {
	sink := smtpenv.StartSink(t)
	c := mailConfig(sink.Addr)
	c.Mail.MaxPerHour = 3
	n := startMailNotifier(t, c)
	for _, th := range []string{"t1", "t2", "t3", "t4", "t5"} {
		n.Emit(Event{Type: TypeStorm, Thread: th})
	}
	st := closeMail(t, n)
	if st.Sent != 3 || st.Limited != 2 || sink.Len() != 3 {
		t.Errorf("stats %+v, sink %d; want 3 sent, 2 rate-limited", st, sink.Len())
	}
}

// TestMailStormAfterGateHolds: gate-hold notices have a budget of their
// own: 19 held posts, with the storm budget at 19, then a storm: the
// storm's notice is delivered; past GateHoldsPerHour gate notices are
// dropped and counted while storm notices still go.
func TestMailStormAfterGateHolds(t *testing.T) {
	sink := smtpenv.StartSink(t)
	c := mailConfig(sink.Addr)
	c.Mail.GateHolds = true
	c.Mail.MaxPerHour = 19
	n := startMailNotifier(t, c)
	for i := range 19 {
		n.Emit(Event{Type: TypeGateHold, Sender: fmt.Sprintf("x%d@example.org", i), List: "all@example.org", Audience: 9000, QueueID: fmt.Sprintf("Q%d", i)})
	}
	n.Emit(Event{Type: TypeStorm, Thread: "storm-after-holds"})
	st := closeMail(t, n)
	storms := 0
	for _, m := range sink.Messages() {
		if strings.Contains(string(m.Data), "X-Stormguard-Notice: storm") {
			storms++
		}
	}
	t.Logf("19 gate holds then a storm: %d notices delivered, %d of them the storm's; stats %+v", sink.Len(), storms, st)
	if storms != 1 || sink.Len() != 20 || st.Limited != 0 {
		t.Errorf("19 gate holds then a storm: %d notices, %d storm, stats %+v; want 20, the storm's among them", sink.Len(), storms, st)
	}

	t.Run("gate budget spent", func(t *testing.T) {
		sink := smtpenv.StartSink(t)
		c := mailConfig(sink.Addr)
		c.Mail.GateHolds = true
		c.Mail.GateHoldsPerHour = 5
		c.Mail.MaxPerHour = 2
		n := startMailNotifier(t, c)
		for i := range 19 {
			n.Emit(Event{Type: TypeGateHold, Sender: "x@example.org", List: "all@example.org", QueueID: fmt.Sprintf("Q%d", i)})
		}
		n.Emit(Event{Type: TypeStorm, Thread: "s1"})
		n.Emit(Event{Type: TypeStorm, Thread: "s2"})
		n.Emit(Event{Type: TypeStorm, Thread: "s3"})
		st := closeMail(t, n)
		if st.Sent != 7 || st.Limited != 15 || sink.Len() != 7 {
			t.Errorf("stats %+v, sink %d; want 5 gate and 2 storm notices sent, 14 gate and 1 storm rate-limited", st, sink.Len())
		}
	})
}

// TestMailGateHolds: gate holds are mailed only with GateHolds.
func TestMailGateHolds(t *testing.T) {
	for _, on := range []bool{false, true} {
		sink := smtpenv.StartSink(t)
		c := mailConfig(sink.Addr)
		c.Mail.GateHolds = on
		n := startMailNotifier(t, c)
		n.Emit(Event{Type: TypeGateHold, Sender: "x@example.org", List: "all@example.org", Audience: 9000, QueueID: "4XyZ1", Subject: "Hello\nX-Evil: 1"})
		st := closeMail(t, n)
		if want := map[bool]int{false: 0, true: 1}[on]; sink.Len() != want || st.Sent != uint64(want) {
			t.Fatalf("gate_holds %v: %d notices, stats %+v; want %d", on, sink.Len(), st, want)
		}
		if on {
			m := sink.Messages()[0]
			if b := decodedBody(t, m); !strings.Contains(b, "postsuper -H 4XyZ1") || len(m.Headers("X-Evil")) != 0 {
				t.Errorf("gate hold notice:\n%s", m.Data)
			}
		}
	}
}

// TestMailOriginalSender: with OriginalSender, the thread's original
// sender is a recipient too, unless the address is unusable.
func TestMailOriginalSender(t *testing.T) {
	sink := smtpenv.StartSink(t)
	c := mailConfig(sink.Addr)
	c.Mail.OriginalSender = true
	n := startMailNotifier(t, c)
	n.Emit(Event{Type: TypeStorm, Thread: "t1", OriginalSender: "boss@example.org"})
	n.Emit(Event{Type: TypeStorm, Thread: "t2", OriginalSender: "x@example.org>\r\nRCPT TO:<evil@example.org"})
	closeMail(t, n)
	for _, m := range sink.Messages() {
		th := m.Header("X-Stormguard-Thread")
		if want := map[string]int{"t1": 3, "t2": 2}[th]; len(m.To) != want || m.HasRcpt("evil@example.org") {
			t.Errorf("thread %s: recipients %v, want %d", th, m.To, want)
		}
	}
	if sink.Len() != 2 {
		t.Errorf("%d notices, want 2", sink.Len())
	}
}

// TestMailUnreachable: with nothing listening at notify.smtp, Emit returns
// at once, and the notice is counted as failed after its tries.
func TestMailUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port: connection refused
	c := mailConfig(addr)
	n := startMailNotifier(t, c)
	start := time.Now()
	for i := range 50 {
		n.Emit(Event{Type: TypeStorm, Thread: "t" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("50 Emits took %s with the SMTP server down", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var st OutletStats
		for _, o := range n.Stats().Outlets {
			if o.Name == "mail" {
				st = o
			}
		}
		if st.Failed > 0 {
			if st.Sent != 0 {
				t.Errorf("stats %+v", st)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no failure counted: %+v", n.Stats())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestMailServerHangs: a server that accepts and never answers holds a
// notice no longer than notify.timeout per try.
func TestMailServerHangs(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	c := mailConfig(ln.Addr().String())
	c.Mail.Timeout = 200 * time.Millisecond
	m := mailOutlet(c.Mail, "mx1", slog.New(slog.DiscardHandler).Warn).mail
	start := time.Now()
	err = m.deliver(context.Background(), c.Mail.To, []byte("x\r\n"))
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Errorf("deliver to a silent server: %v after %s, want an error within ~200ms", err, took)
	}
}

// plainSession records how a notice was handed over: over TLS or not,
// authenticated or not.
type plainSession struct {
	conn *smtp.Conn
	mu   *sync.Mutex
	got  *[]string // one line per message: "tls=… auth=… rcpts=N"
	auth bool
	n    int
}

func (s *plainSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *plainSession) Auth(string) (sasl.Server, error) {
	s.auth = true
	return sasl.NewPlainServer(func(string, string, string) error { return nil }), nil
}
func (s *plainSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *plainSession) Rcpt(string, *smtp.RcptOptions) error { s.n++; return nil }
func (s *plainSession) Data(r io.Reader) error {
	_, _ = io.Copy(io.Discard, r)
	_, isTLS := s.conn.TLSConnectionState()
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.got = append(*s.got, fmt.Sprintf("tls=%v auth=%v rcpts=%d", isTLS, s.auth, s.n))
	return nil
}
func (s *plainSession) Reset()        { s.n = 0 }
func (s *plainSession) Logout() error { return nil }

// TestMailPlainNoAuth: notices go to the local MTA in plain SMTP, without
// STARTTLS or AUTH, even when the server offers both.
func TestMailPlainNoAuth(t *testing.T) {
	files := testenv.MakeTLSFiles(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(files.ServerCertFile, files.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &plainSession{conn: c, mu: &mu, got: &got}, nil
	}))
	srv.Domain = "mta.stormguard.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); _ = ln.Close() })

	m := mailOutlet(mailConfig(ln.Addr().String()).Mail, "mx1", slog.New(slog.DiscardHandler).Warn).mail
	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok || !c.SupportsAuth(sasl.Plain) {
		t.Fatalf("the test server offers no STARTTLS or AUTH PLAIN")
	}
	c.Close()
	if err := m.deliver(context.Background(), m.c.To, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "tls=false auth=false rcpts=2" {
		t.Errorf("notices %q, want one in plain text without AUTH to 2 recipients", got)
	}
}

func TestMailValidate(t *testing.T) {
	for _, tc := range []struct {
		edit func(*MailConfig)
		want string
	}{
		{func(c *MailConfig) { c.To = []string{"Admin <a@b>"} }, "notify.to"},
		{func(c *MailConfig) { c.To = []string{"a@b\r\nx"} }, "notify.to"},
		{func(c *MailConfig) { c.From = "nobody" }, "notify.from"},
		{func(c *MailConfig) { c.SMTP = "localhost" }, "notify.smtp"},
		{func(c *MailConfig) { c.Timeout = 0 }, "notify.timeout"},
		{func(c *MailConfig) { c.MaxPerHour = 0 }, "notify.max_per_hour"},
		{func(c *MailConfig) { c.GateHolds, c.GateHoldsPerHour = true, 0 }, "notify.gate_holds_per_hour"},
		{func(c *MailConfig) { c.OncePer = 0 }, "notify.once_per"},
	} {
		c := mailConfig("127.0.0.1:25").Mail
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, tc.want)
		}
	}
	if err := (MailConfig{}).Validate(); err != nil {
		t.Errorf("no notify.to (off): %v", err)
	}
}
