package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/internal/testenv/postfixenv"
	"github.com/stormguard/stormguard/internal/testenv/sendmailenv"
	"github.com/stormguard/stormguard/internal/testenv/smtpenv"
)

// spamFilter is a second milter, as a spam or virus scanner is: it reads
// the whole message and, while reject is set, refuses it at end of
// message with 550 5.7.1.
type spamFilter struct {
	reject atomic.Bool
	seen   atomic.Int64 // messages it answered at end of message
	addr   string
}

// startSpamFilter serves a spamFilter on a free 127.0.0.1 port until the
// test ends.
func startSpamFilter(t *testing.T) *spamFilter {
	t.Helper()
	sf := &spamFilter{}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sf.addr = ln.Addr().String()
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &spamSession{sf: sf} }))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return sf
}

type spamSession struct {
	gomilter.NoOpMilter
	sf *spamFilter
}

func (s *spamSession) EndOfMessage(gomilter.Modifier) (*gomilter.Response, error) {
	s.sf.seen.Add(1)
	if s.sf.reject.Load() {
		return gomilter.RejectWithCodeAndReason(550, "5.7.1 Message looks like spam")
	}
	return gomilter.RespAccept, nil
}

// TestLaterMilterRejects: replies that a spam milter beside stormguard
// rejects at end of message reach nobody. Postfix (smtpd_milters) and
// Sendmail (InputMailFilters) both hand the whole message, end of message
// included, to each milter in turn and stop at the first that refuses it.
// With stormguard last (where the README puts it) it never sees the 11
// rejected replies, and the thread's next 10 replies pass before the 11th
// is refused. With stormguard first they are counted (the 11th is refused
// by stormguard itself), and the thread stays blocked on replies nobody
// received: why it goes last.
func TestLaterMilterRejects(t *testing.T) {
	const maxReplies = 10 // the default policy.max_replies
	run := func(t *testing.T, mta string, last bool) (counted int) {
		root := fmt.Sprintf("later-%s-%v@example.org", mta, last)
		const subject = "Later milter"
		sink := smtpenv.StartSink(t)
		spam := startSpamFilter(t)
		d := startDaemon(t, fmt.Sprintf("lists:\n  %s: 3000\n", staffList))
		var addr string // the MTA's SMTP port
		if mta == "postfix" {
			milters := "inet:" + d.addr + ", inet:" + spam.addr
			if last {
				milters = "inet:" + spam.addr + ", inet:" + d.addr
			}
			pf := postfixenv.Start(t, postfixenv.Options{RelayTo: sink.Addr, Milter: milters})
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("postfix log:\n%s", pf.Log())
				}
			})
			addr = pf.Addr
		} else {
			filter := func(name, addr string) string {
				port := addr[strings.LastIndexByte(addr, ':')+1:]
				return "INPUT_MAIL_FILTER(`" + name + "', `S=inet:" + port + "@127.0.0.1, F=T')"
			}
			milters := filter("stormguard", d.addr) + filter("spam", spam.addr)
			if last {
				milters = filter("spam", spam.addr) + filter("stormguard", d.addr)
			}
			sm := sendmailenv.Start(t, sendmailenv.Options{RelayTo: sink.Addr, Milter: milters})
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("sendmail log:\n%s", sm.Log())
				}
			})
			addr = sm.Addr
		}
		post := func(from string, rcpts []string, data []byte) smtpenv.Reply {
			t.Helper()
			r, err := smtpenv.Send(addr, from, rcpts, data)
			if err != nil {
				t.Fatalf("smtp: %v", err)
			}
			return r
		}
		reply := func(i int) smtpenv.Reply {
			return post(fmt.Sprintf("user%d@example.org", i), []string{staffList, boss}, replyAllMail(i, root, staffList, subject))
		}
		if r := post(boss, []string{staffList}, originalMail(root, staffList, subject)); !r.OK() {
			t.Fatalf("original: %v", r)
		}
		spam.reject.Store(true)
		for i := 1; i <= maxReplies+1; i++ {
			r := reply(i)
			if r.Code != 550 || !strings.Contains(r.Text, "spam") && (last || !strings.Contains(r.Text, string(threadOf(root)))) {
				t.Fatalf("reply %d with the spam milter rejecting: %v, want a 550", i, r)
			}
		}
		spam.reject.Store(false)
		taken := 0
		for i := 100; ; i++ {
			r := reply(i)
			if !r.OK() {
				if r.Code != 550 || !strings.Contains(r.Text, string(threadOf(root))) {
					t.Fatalf("reply %d: %v, want 250 or stormguard's 550", i, r)
				}
				// Count what stormguard made of the rejected replies: its
				// decisions on them. The daemon logs in order, so once the
				// decision on this last reply is in the log, every earlier
				// one it made is too.
				d.log.wait(t, 0, fmt.Sprintf("sender=user%d@example.org", i))
				for j := 1; j <= maxReplies+1; j++ {
					if strings.Contains(d.log.String(), fmt.Sprintf("sender=user%d@example.org", j)) {
						counted++
					}
				}
				t.Logf("%s, stormguard %s: %d replies refused while the spam milter rejects, %d of them decided by stormguard; then %d delivered, the next refused: %d %s",
					mta, map[bool]string{true: "last", false: "first"}[last], maxReplies+1, counted, taken, r.Code, r.Text)
				break
			}
			taken++
			if taken > maxReplies {
				t.Fatalf("%d replies delivered in a thread with max_replies %d", taken, maxReplies)
			}
		}
		if last && (counted != 0 || taken != maxReplies) {
			t.Errorf("stormguard last: %d rejected replies counted, %d delivered before the refusal; want 0 and %d", counted, taken, maxReplies)
		}
		return counted
	}
	for _, mta := range []string{"postfix", "sendmail"} {
		t.Run(mta+", stormguard last", func(t *testing.T) { run(t, mta, true) })
		t.Run(mta+", stormguard first", func(t *testing.T) {
			if counted := run(t, mta, false); counted != maxReplies+1 {
				t.Errorf("stormguard first: %d of %d rejected replies decided; want all (the MTA gives it each before the spam milter)", counted, maxReplies+1)
			}
		})
	}
}
