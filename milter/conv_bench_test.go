package milter

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// BenchmarkConversation is what one small message costs over the milter
// protocol, as Postfix sends it with one message per SMTP session: a new
// connection and negotiation, CONNECT, HELO, MAIL, two RCPTs, DATA, eight
// headers, end of headers (where both answer), close. stormguard against a
// no-op milter on the same library and the same negotiation: the
// difference is stormguard's own (client and server run in this process,
// so both figures include go-milter's client).
//
//	go test -run '^$' -bench Conversation -benchmem -count 6 ./milter/
func BenchmarkConversation(b *testing.B) {
	b.Run("noop", func(b *testing.B) {
		srv := gomilter.NewServer(append(Negotiation(Protocols|NoReplies),
			gomilter.WithMilter(func() gomilter.Milter { return benchNoop{} }))...)
		benchConversation(b, srv.Serve, srv.Shutdown, Listen)
	})
	b.Run("stormguard", func(b *testing.B) {
		cfg := testConfig()
		cfg.Policy = policy.Defaults()
		cfg.Lists = map[string]int{listAddr: 20000}
		f, err := NewFilter(cfg, store.NewMemory(), nil, discardLogger(), nil)
		if err != nil {
			b.Fatal(err)
		}
		srv := NewServer(f)
		benchConversation(b, srv.Serve, srv.Shutdown, Listen)
		if got := f.Stats.Decisions.Load(); got < uint64(b.N) {
			b.Errorf("stormguard decided %d messages of %d", got, b.N)
		}
	})
}

// benchNoop continues everywhere and accepts at end of headers.
type benchNoop struct{ gomilter.NoOpMilter }

func (benchNoop) RcptTo(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (benchNoop) Header(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (benchNoop) Headers(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespAccept, nil
}

func benchConversation(b *testing.B, serve func(net.Listener) error, shutdown func(context.Context) error,
	listen func(string, os.FileMode) (net.Listener, error)) {
	ln, err := listen("inet:127.0.0.1:0", 0)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
		<-done
	}()
	client := gomilter.NewClient("tcp", ln.Addr().String())
	headers := [][2]string{
		{"Received", " from client.example.net (client.example.net [192.0.2.1]) by mx.example.org"},
		{"From", " Ann <ann@example.org>"},
		{"To", " Bob <bob@example.org>, carol@example.org"},
		{"Subject", " Quarterly figures"},
		{"Date", " Tue, 1 Dec 2026 10:00:00 +0000"},
		{"Message-ID", ""},
		{"MIME-Version", " 1.0"},
		{"Content-Type", " text/plain; charset=utf-8"},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s, err := client.Session(gomilter.NewMacroBag())
		if err != nil {
			b.Fatal(err)
		}
		step := func(_ *gomilter.Action, err error) {
			if err != nil {
				b.Fatal(err)
			}
		}
		step(s.Conn("client.example.net", gomilter.FamilyInet, 25000, "192.0.2.1"))
		step(s.Helo("client.example.net"))
		step(s.Mail("ann@example.org", ""))
		step(s.Rcpt("bob@example.org", ""))
		step(s.Rcpt("carol@example.org", ""))
		step(s.DataStart())
		headers[5][1] = fmt.Sprintf(" <small-%d@example.org>", i)
		for _, h := range headers {
			step(s.HeaderField(h[0], h[1], nil))
		}
		act, err := s.HeaderEnd()
		if err != nil || act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
			b.Fatalf("end of headers: %v, %v", act, err)
		}
		_ = s.Close()
	}
}
