package identity

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// The list every large-audience message goes to, registered in the
// daemons' config; anything else counts one mailbox, so mail without it
// stays under min_audience (2500) and never reaches the store.
const (
	ListAddr = "all-staff@bench.example"
	ListSize = 20000
)

// Class is the shape of a message, as far as thread identity goes.
type Class int

const (
	SmallNew   Class = iota // new mail to 1-3 people
	SmallReply              // a reply to one person
	Original                // new mail to the list: starts a thread
	RefsRoot                // reply-all to the original: References = In-Reply-To = the root
	RefsChain               // reply-all to a reply: References = the parent's References + the parent
	IPhone                  // iPhone Mail: References = In-Reply-To = the parent only
	LongRefs                // References of 60 ids: the root, older ids, the parent's chain, the parent
	NumClasses
)

var classNames = [NumClasses]string{"small new mail", "small reply", "large original",
	"reply-all to the root", "reply-all to a reply", "iPhone reply (References = parent)", "60 References"}

func (c Class) String() string { return classNames[c] }

// Large reports whether the class goes to the list.
func (c Class) Large() bool { return c >= Original }

// MaxRefs is how many ids a reply's References carries at most (the root
// and the latest ones), and what LongRefs pads to.
const MaxRefs = 60

// Mail is one message as an MTA hands it to a milter.
type Mail struct {
	Class   Class
	ID      string   // Message-ID without brackets
	Refs    []string // References, ids without brackets
	From    string
	Rcpts   []string
	Headers [][2]string
}

func envelope(from string) [][2]string {
	return [][2]string{
		{"Received", "from client.bench.example (client.bench.example [192.0.2.1]) by mx.bench.example (Postfix) with ESMTPS id 4XyZ1k2QpRz"},
		{"Date", time.Now().Format(time.RFC1123Z)},
		{"From", "User <" + from + ">"},
	}
}

func bracket(ids []string) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("<" + id + ">")
	}
	return b.String()
}

func trailer(h [][2]string) [][2]string {
	return append(h, [2]string{"MIME-Version", "1.0"}, [2]string{"Content-Type", "text/plain; charset=utf-8"})
}

// SmallNewMail is new mail to n people (1-3).
func SmallNewMail(id, from string, n int) Mail {
	m := Mail{Class: SmallNew, ID: id, From: from}
	var to []string
	for i := range n {
		a := fmt.Sprintf("person%d.%s", i, strings.SplitN(id, "@", 2)[0]) + "@bench.example"
		m.Rcpts = append(m.Rcpts, a)
		to = append(to, a)
	}
	m.Headers = trailer(append(envelope(from), [2]string{"To", strings.Join(to, ", ")},
		[2]string{"Subject", "Quarterly figures"}, [2]string{"Message-ID", "<" + id + ">"}))
	return m
}

// SmallReplyMail is a reply to one person, to a message never seen.
func SmallReplyMail(id, from, parent string) Mail {
	to := "person@bench.example"
	m := Mail{Class: SmallReply, ID: id, Refs: []string{parent}, From: from, Rcpts: []string{to}}
	m.Headers = trailer(append(envelope(from), [2]string{"To", to},
		[2]string{"Subject", "Re: Lunch on Friday?"}, [2]string{"Message-ID", "<" + id + ">"},
		[2]string{"In-Reply-To", "<" + parent + ">"}, [2]string{"References", "<" + parent + ">"}))
	return m
}

// OriginalMail is new mail to the list.
func OriginalMail(id, from string) Mail {
	m := Mail{Class: Original, ID: id, From: from, Rcpts: []string{ListAddr}}
	m.Headers = trailer(append(envelope(from), [2]string{"To", "All staff <" + ListAddr + ">"},
		[2]string{"Subject", "Test message, please ignore"}, [2]string{"Message-ID", "<" + id + ">"}))
	return m
}

// ReplyMail is a reply-all to the list answering parent, with References
// refs (In-Reply-To is the parent) and the given class.
func ReplyMail(c Class, id, from, parent string, refs []string) Mail {
	m := Mail{Class: c, ID: id, Refs: refs, From: from, Rcpts: []string{ListAddr, "boss@bench.example"}}
	m.Headers = trailer(append(envelope(from), [2]string{"To", ListAddr + ", boss@bench.example"},
		[2]string{"Subject", "RE: Test message, please ignore"}, [2]string{"Message-ID", "<" + id + ">"},
		[2]string{"In-Reply-To", "<" + parent + ">"}, [2]string{"References", bracket(refs)}))
	return m
}

// FullRefs is what Gmail, Thunderbird and Outlook write when answering
// parent: the parent's References and the parent's id, cut to the first
// and the last MaxRefs-1.
func FullRefs(parentRefs []string, parent string) []string {
	refs := append(append([]string(nil), parentRefs...), parent)
	if len(refs) > MaxRefs {
		refs = append(refs[:1:1], refs[len(refs)-MaxRefs+1:]...)
	}
	return refs
}

// PaddedRefs is FullRefs with ids of older messages no node has seen (a
// long thread's, its early messages long expired) put after the root, up
// to MaxRefs ids. The padding ids are old-N.<old>: old is a message id
// (with its @domain) unique to the reply.
func PaddedRefs(parentRefs []string, parent, old string) []string {
	refs := FullRefs(parentRefs, parent)
	if len(refs) >= MaxRefs {
		return refs
	}
	pad := make([]string, 0, MaxRefs)
	pad = append(pad, refs[0])
	for i := range MaxRefs - len(refs) {
		pad = append(pad, fmt.Sprintf("old-%d.%s", i, old))
	}
	return append(pad, refs[1:]...)
}

// Mix makes the messages of one latency run: 90 % small new mail, 5 %
// small replies, 5 % to the list, in storms. Storm messages go to one of
// Threads threads at a time; a thread starts with its original and takes
// ThreadLen messages (about 10 let through, max_replies, the rest refused
// in the blocked thread, people answering what they already had), then a
// new thread takes its place. A reply answers a message of its thread
// that was let through (the latest one half of the time, so chains of
// replies answering replies form, across the nodes), written by a client
// of one of three kinds when the parent is a reply: References = the
// parent's References + the parent (60 %), iPhone Mail's parent only
// (25 %), or a long thread's 60 ids (15 %); a reply to the original has
// References = the root from every client.
type Mix struct {
	run     string
	threads int
	length  int

	mu      sync.Mutex
	active  []*thread
	started int
}

type thread struct {
	root     string
	n        int      // messages taken
	rootSent bool     // the original has been sent
	known    []letter // messages let through, the original first
}

// letter is a message of a thread that people received.
type letter struct {
	id   string
	refs []string
}

// Mix shape.
const (
	Threads   = 4
	ThreadLen = 30
)

func NewMix() *Mix {
	return &Mix{run: fmt.Sprintf("%x", rand.Uint64()), threads: Threads, length: ThreadLen}
}

// Next makes message seq and returns it with the function to call with
// its verdict (true: let through).
func (x *Mix) Next(r *rand.Rand, seq uint64) (Mail, func(delivered bool)) {
	id := fmt.Sprintf("%d.%s@mail.bench.example", seq, x.run)
	from := fmt.Sprintf("user%d@bench.example", r.IntN(5000))
	none := func(bool) {}
	switch n := r.IntN(100); {
	case n < 90:
		return SmallNewMail(id, from, 1+r.IntN(3)), none
	case n < 95:
		return SmallReplyMail(id, from, fmt.Sprintf("p%d.%s@mail.bench.example", r.IntN(100000), x.run)), none
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	slot := r.IntN(x.threads)
	for len(x.active) <= slot {
		x.active = append(x.active, nil)
	}
	th := x.active[slot]
	if th == nil || th.n >= x.length {
		x.started++
		th = &thread{root: fmt.Sprintf("root-%d.%s@bench.example", x.started, x.run)}
		x.active[slot] = th
	}
	th.n++
	if !th.rootSent {
		th.rootSent = true
		return OriginalMail(th.root, from), x.keep(th, th.root, nil)
	}
	parent := letter{id: th.root} // the original, still on its way
	if k := len(th.known); k > 0 {
		parent = th.known[k-1]
		if r.IntN(2) == 0 {
			parent = th.known[r.IntN(k)]
		}
	}
	var m Mail
	switch s := r.IntN(100); {
	case parent.id == th.root: // every client writes References = the root here
		m = ReplyMail(RefsRoot, id, from, th.root, []string{th.root})
	case s < 60:
		m = ReplyMail(RefsChain, id, from, parent.id, FullRefs(parent.refs, parent.id))
	case s < 85:
		m = ReplyMail(IPhone, id, from, parent.id, []string{parent.id})
	default:
		m = ReplyMail(LongRefs, id, from, parent.id, PaddedRefs(parent.refs, parent.id, id))
	}
	return m, x.keep(th, m.ID, m.Refs)
}

// keep returns the verdict callback: a message let through joins its
// thread's letters, which later replies answer.
func (x *Mix) keep(th *thread, id string, refs []string) func(bool) {
	return func(delivered bool) {
		if !delivered {
			return
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		if id == th.root { // the original first, even when a reply overtook it
			th.known = append([]letter{{id: id}}, th.known...)
			return
		}
		th.known = append(th.known, letter{id: id, refs: refs})
	}
}
