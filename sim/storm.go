package sim

// The storm's messages. Without a client mix (Config.Clients empty) every
// reply is the plain reply of stormMessages, naming the original. With
// one, each replier's client is drawn from the mix and writes the reply
// through the catalogue (clients.go), answering the original or, with
// probability Config.ReplyShare, a reply picked uniformly at random among
// those delivered so far: people answer what reached them, so a refused
// reply is never answered.

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// clientEpoch is the wall-clock time the clients write into their
// Message-IDs and Thread-Index values for simulated time 0: the NHSmail
// storm's start. Fixed, so that a seed gives the same headers on every
// run; the filter reads its own simulated clock.
var clientEpoch = time.Date(2016, 11, 14, 8, 29, 0, 0, time.UTC)

// storm hands out the storm's messages in arrival order.
type storm struct {
	at    []time.Duration // reply i's arrival is at[i-1]
	plain []message       // without a mix: every message, written up front

	seed    int64
	share   float64
	clients []Client  // message i's client (0: the original's)
	answer  []float64 // per reply: below share, it answers an earlier delivered reply
	pick    []float64 // per reply: which of the delivered replies, uniformly
}

// newStorm draws everything a run's messages depend on from the seed,
// before any message is sent, so that the draws do not depend on what
// the filter answers. The arrival times come from their own stream
// (arrivals), so a mix leaves them as they are without one.
func newStorm(c Config, at []time.Duration) *storm {
	s := &storm{at: at, seed: c.Seed, share: c.ReplyShare}
	if len(c.Clients) == 0 {
		s.plain = stormMessages(at)
		return s
	}
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x636c69656e74)) // "client"
	s.clients = append(s.clients, c.Clients.pick(rng.Float64()))
	for range at {
		s.clients = append(s.clients, c.Clients.pick(rng.Float64()))
		s.answer = append(s.answer, rng.Float64())
		s.pick = append(s.pick, rng.Float64())
	}
	return s
}

// len is the number of messages: the original and the replies.
func (s *storm) len() int { return len(s.at) + 1 }

// message is message i (0: the original), given the messages sent so far
// (sent[j] is message j, j < i) and the replies among them that were
// delivered (indices into sent).
func (s *storm) message(i int, sent []message, delivered []int) message {
	if s.plain != nil {
		return s.plain[i]
	}
	rng := rand.New(rand.NewPCG(uint64(s.seed), 0x6d61696c<<32|uint64(i))) // "mail": its own stream per message
	c := s.clients[i]
	if i == 0 {
		mail := c.Original(rng, boss, subject, clientEpoch)
		return message{from: boss, rcpts: []string{list}, mail: mail,
			headers: milterHeaders(Mail{{"From", "Boss <" + boss + ">"}, {"To", "All staff <" + list + ">"}}, mail)}
	}
	parent := sent[0]
	if len(delivered) > 0 && s.answer[i-1] < s.share {
		parent = sent[delivered[int(s.pick[i-1]*float64(len(delivered)))]]
	}
	at := s.at[i-1]
	from := fmt.Sprintf("replier-%d@%s", i, domain)
	rcpts := []string{list, boss} // reply-all: the list, the original's sender and the parent's
	if parent.from != boss {
		rcpts = append(rcpts, parent.from)
	}
	mail := c.Reply(rng, from, parent.mail, clientEpoch.Add(at))
	return message{at: at, from: from, rcpts: rcpts, mail: mail,
		headers: milterHeaders(Mail{{"From", "<" + from + ">"}, {"To", strings.Join(rcpts, ", ")}}, mail)}
}

// milterHeaders is the envelope headers and the client's as the milter receives
// them: each value after a space.
func milterHeaders(parts ...Mail) [][2]string {
	var out [][2]string
	for _, m := range parts {
		for _, h := range m {
			out = append(out, [2]string{h.Name, " " + h.Value})
		}
	}
	return out
}

// describeMix is a mix as the report prints it: "outlook365 40, iphone 20".
func describeMix(m Mix) string {
	parts := make([]string, len(m))
	for i, s := range m {
		parts[i] = fmt.Sprintf("%s %d", s.Client, s.Weight)
	}
	return strings.Join(parts, ", ")
}
