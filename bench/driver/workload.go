package main

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// The list every large-audience message goes to. In-process stormguard
// targets get it in their config; an external daemon needs it registered
// (redis-cli HSET stormguard:lists all-staff@bench.example 20000, or
// STORMGUARD_LISTS=all-staff@bench.example=20000).
const (
	listAddr = "all-staff@bench.example"
	listSize = 20000
)

// class is one kind of message in the mix.
type class int

const (
	classSmallNew    class = iota // new mail to 1-3 people: ~90%
	classSmallReply               // reply to 1-2 people: ~5%
	classLargeRefs                // reply-all to the list with References, to one of a few threads: ~4%
	classLargeNoRefs              // reply-all to the list with In-Reply-To only: ~1%
	numClasses
)

var classNames = [numClasses]string{"small-new", "small-reply", "large-reply-refs", "large-reply-inreplyto"}

// pick draws a class with the mix above.
func pick(r *rand.Rand) class {
	switch n := r.IntN(100); {
	case n < 90:
		return classSmallNew
	case n < 95:
		return classSmallReply
	case n < 99:
		return classLargeRefs
	default:
		return classLargeNoRefs
	}
}

// message is one message as an MTA hands it to a milter.
type message struct {
	class   class
	from    string
	rcpts   []string
	headers [][2]string
}

// workload makes the messages of one run. run is unique per run, so each
// run starts its storms afresh (new thread roots, new message-ids).
type workload struct {
	run     string
	threads int // large-audience threads being replied to
}

func newWorkload(threads int) *workload {
	return &workload{run: fmt.Sprintf("%x", rand.Uint64()), threads: max(threads, 1)}
}

func (w *workload) root(i int) string { return fmt.Sprintf("root-%d.%s@bench.example", i, w.run) }

// next makes message seq (unique in the run) of class c.
func (w *workload) next(r *rand.Rand, c class, seq uint64) message {
	from := fmt.Sprintf("user%d@bench.example", r.IntN(5000))
	msgID := fmt.Sprintf("<%d.%s@mail.bench.example>", seq, w.run)
	date := time.Now().Format(time.RFC1123Z)
	m := message{class: c, from: from}
	h := [][2]string{
		{"Received", "from client.bench.example (client.bench.example [192.0.2.1]) by mx.bench.example (Postfix) with ESMTPS id 4XyZ1k2QpRz"},
		{"Date", date},
		{"From", "User <" + from + ">"},
	}
	switch c {
	case classSmallNew:
		n := 1 + r.IntN(3)
		to := ""
		for i := range n {
			a := fmt.Sprintf("person%d@bench.example", r.IntN(20000))
			m.rcpts = append(m.rcpts, a)
			if i > 0 {
				to += ", "
			}
			to += a
		}
		h = append(h, [2]string{"To", to},
			[2]string{"Subject", fmt.Sprintf("Quarterly figures %d", r.IntN(1000))},
			[2]string{"Message-ID", msgID})
	case classSmallReply:
		to := fmt.Sprintf("person%d@bench.example", r.IntN(20000))
		parent := fmt.Sprintf("<p%d.%s@mail.bench.example>", r.IntN(100000), w.run)
		m.rcpts = []string{to}
		h = append(h, [2]string{"To", to},
			[2]string{"Subject", "Re: Lunch on Friday?"},
			[2]string{"Message-ID", msgID},
			[2]string{"In-Reply-To", parent},
			[2]string{"References", parent})
	case classLargeRefs:
		root := "<" + w.root(r.IntN(w.threads)) + ">"
		parent := fmt.Sprintf("<r%d.%s@mail.bench.example>", r.IntN(1000), w.run)
		m.rcpts = []string{listAddr, "boss@bench.example"}
		h = append(h, [2]string{"To", listAddr + ", boss@bench.example"},
			[2]string{"Subject", "RE: Test message, please ignore"},
			[2]string{"Message-ID", msgID},
			[2]string{"In-Reply-To", parent},
			[2]string{"References", root + " " + parent})
	case classLargeNoRefs:
		parent := "<" + w.root(r.IntN(w.threads)) + ">"
		m.rcpts = []string{listAddr}
		h = append(h, [2]string{"To", listAddr},
			[2]string{"Subject", "Re: Test message, please ignore"},
			[2]string{"Message-ID", msgID},
			[2]string{"In-Reply-To", parent})
	}
	h = append(h, [2]string{"MIME-Version", "1.0"},
		[2]string{"Content-Type", "text/plain; charset=utf-8"})
	m.headers = h
	return m
}
