// Package noop is the baseline of stormguard's benchmarks: a milter built on
// the same library (github.com/d--j/go-milter, low-level server), that
// negotiates the same events, actions and macros as stormguard, replies to
// every event (no v6 "no reply" flags, so Postfix does not stall on Nagle)
// and accepts every message at end of headers.
//
// It must do nothing else: whatever stormguard costs on top of it is
// stormguard's own cost.
package noop

import (
	"errors"
	"net"

	gomilter "github.com/d--j/go-milter"

	"github.com/stormguard/stormguard/milter"
)

// filter continues at every event and accepts at end of headers.
type filter struct{ gomilter.NoOpMilter }

func (filter) RcptTo(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (filter) Header(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (filter) Headers(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespAccept, nil
}

// NewServer returns the no-op milter server, configured like
// stormguard's milter.NewServer.
func NewServer() *gomilter.Server { return NewServerWith(Protocols) }

// Protocols is what the no-op milter negotiates: stormguard's own
// (milter.Protocols). With OptNoConnect|OptNoHelo|OptNoData as well, Postfix
// stalls ~40 ms per message on TCP (see docs/performance.md).
const Protocols = milter.Protocols

// StallProtocols skips CONNECT, HELO and DATA as well: the noop-skip
// target of bench/postfix negotiates it to show the stall.
const StallProtocols = Protocols | gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoData

// NewServerWith is NewServer negotiating protocols instead.
func NewServerWith(protocols gomilter.OptProtocol) *gomilter.Server {
	return gomilter.NewServer(append(milter.Negotiation(protocols),
		gomilter.WithMilter(func() gomilter.Milter { return filter{} }))...)
}

// Serve answers milter connections on ln until srv is shut down.
func Serve(srv *gomilter.Server, ln net.Listener) error {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, gomilter.ErrServerClosed) {
		return err
	}
	return nil
}

// NoReplyProtocols is Protocols with the v6 "no reply" flags for every
// event the no-op answers with continue (CONNECT, HELO, MAIL, RCPT, DATA,
// each header): Postfix then waits for a reply only at end of headers.
const NoReplyProtocols = Protocols | gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply |
	gomilter.OptNoRcptReply | gomilter.OptNoDataReply | gomilter.OptNoHeaderReply
