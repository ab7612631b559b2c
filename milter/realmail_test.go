package milter_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv"
	"github.com/stormguard/stormguard/milter"
	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestRealMailThreads replays real mailing-list mail, written by many
// clients (testdata/realmail, SOURCES.md there), through the daemon's own
// decision path and compares the threads it gives with the conversations
// of a reference threader nobody here wrote: Debian's notmuch (JWZ-style,
// References and In-Reply-To only, never the subject).
//
// Each notmuch conversation's stormguard thread is the one its earliest
// message got; a reply (any message but the earliest) agrees when it got
// that thread too. notmuch never threads by subject, so a conversation it
// splits for lack of headers may rightly be one stormguard thread: a
// stormguard thread over several notmuch conversations is a merge of
// distinct conversations only when they share no base subject.

// The figures the replay must reach.
const (
	// minRealMailAgreement is the share of replies that must land in
	// their conversation's thread, among the replies a threader deciding
	// each message as it arrives can place: those whose chain of parents
	// in the archive leads to the conversation's first message. notmuch
	// also joins messages through ids the archive lacks (an unarchived
	// parent, an author's address in an obsolete "Message from X <addr>
	// of date" In-Reply-To) and through messages that came later; those
	// replies are counted in minRealMailAgreementAll only.
	minRealMailAgreement = 0.995
	// minRealMailAgreementAll is the share over every reply.
	minRealMailAgreementAll = 0.945
	// maxRealMailSplits is how many notmuch conversations may be spread
	// over more than one stormguard thread: those whose messages share no
	// id that stormguard can know, in the corpus as it is (see the log of
	// every disagreement for the causes).
	maxRealMailSplits = 19
	// realMailMembers is each list's size: every message is large-audience.
	realMailMembers = 5000
)

// realMsg is one message of the corpus.
type realMsg struct {
	file   string // the mbox it came from
	list   string // the registered list address it is sent to (one per mbox)
	raw    []byte // its header block, as stored
	date   time.Time
	hdr    map[string]string // lower-case name: first occurrence, folds kept
	id     string            // its Message-ID as notmuch reads it (inside <>)
	thread policy.ThreadID   // what stormguard decided
	conv   int               // its notmuch conversation
	parent int               // its parent in notmuch's tree, -1 for none
}

func (m *realMsg) get(name string) string { return m.hdr[strings.ToLower(name)] }

// loadRealMail reads every mbox (optionally gzipped) under dir.
func loadRealMail(t *testing.T, dir string) []*realMsg {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.mbox*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no mbox files in %s (%v)", dir, err)
	}
	sort.Strings(files)
	var msgs []*realMsg
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".gz"), ".mbox")
		list := name + "@lists.example.org"
		for _, m := range splitMbox(b) {
			m.file, m.list = name, list
			msgs = append(msgs, m)
		}
	}
	// Archive date order; the file order breaks ties.
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].date.Before(msgs[j].date) })
	return msgs
}

// splitMbox splits an mbox into its messages' header blocks (the corpus
// keeps no bodies). The date is the Date header's, else the From line's.
func splitMbox(b []byte) []*realMsg {
	var out []*realMsg
	var cur *realMsg
	var from time.Time
	var last string // the header a continuation line belongs to
	inHeader := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	finish := func() {
		if cur == nil {
			return
		}
		if d, err := mail.ParseDate(strings.Join(strings.Fields(cur.get("Date")), " ")); err == nil {
			cur.date = d
		} else {
			cur.date = from
		}
		out = append(out, cur)
		cur = nil
	}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "From ") && !inHeader {
			finish()
			from = time.Time{}
			if f := strings.Fields(line); len(f) >= 7 {
				from, _ = time.Parse("Mon Jan _2 15:04:05 2006", strings.Join(f[len(f)-5:], " "))
			}
			cur = &realMsg{hdr: map[string]string{}, parent: -1}
			inHeader = true
			continue
		}
		if cur == nil || !inHeader {
			continue
		}
		if line == "" {
			inHeader = false
			continue
		}
		cur.raw = append(append(cur.raw, line...), '\n')
		if line[0] == ' ' || line[0] == '\t' {
			if last != "" {
				cur.hdr[last] += "\n" + line
			}
			continue
		}
		last = ""
		if i := strings.IndexByte(line, ':'); i > 0 {
			name := strings.ToLower(strings.TrimSpace(line[:i]))
			if _, dup := cur.hdr[name]; !dup { // the first occurrence counts, as in the milter
				cur.hdr[name] = strings.TrimLeft(line[i+1:], " \t")
				last = name
			}
		}
	}
	finish()
	for _, m := range out {
		m.id = notmuchID(m.get("Message-ID"))
	}
	return out
}

// notmuchID is a Message-ID as notmuch stores it: what stands inside the
// first <...>, without whitespace.
func notmuchID(v string) string {
	v = strings.Join(strings.Fields(v), "")
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	return v
}

// replayStormguard runs every message, in date order, through a Filter over
// a memory store, sent to its mbox's list, and records its thread. No
// limit applies (0 disables a rule): a refused message writes no identity
// links and would change what later messages find.
func replayStormguard(t *testing.T, msgs []*realMsg) {
	t.Helper()
	cfg := milter.Defaults()
	cfg.Policy.Limits.MaxReplies = 0
	cfg.Policy.Limits.DeliveryBudget = 0
	cfg.Lists = map[string]int{}
	for _, m := range msgs {
		cfg.Lists[m.list] = realMailMembers
	}
	start := time.Now() // one clock for the whole replay: nothing expires
	f, err := milter.NewFilter(cfg, store.NewMemory(), nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return start })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range msgs {
		d := f.Decide(ctx, &milter.Message{
			Sender: "member@example.org",
			Rcpts:  []string{m.list},
			Headers: policy.Headers{
				MessageID:   m.get("Message-ID"),
				InReplyTo:   m.get("In-Reply-To"),
				References:  m.get("References"),
				ThreadIndex: m.get("Thread-Index"),
				Subject:     m.get("Subject"),
				To:          []string{m.list},
			},
		})
		if !d.Stored || d.Action != policy.ActionAccept || d.Thread == "" {
			t.Fatalf("%s <%s>: not stored and accepted: stored %v action %s rule %s thread %q",
				m.file, m.id, d.Stored, d.Action, d.Rule, d.Thread)
		}
		m.thread = d.Thread
	}
}

// notmuchConversations writes the messages into a maildir, indexes it with
// notmuch and sets each message's conversation and parent from notmuch's
// threads. It returns the number of conversations.
func notmuchConversations(t *testing.T, msgs []*realMsg) int {
	t.Helper()
	bin := testenv.LookPath(t, "notmuch", "install Debian's notmuch package (apt-get install notmuch)")
	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// notmuch's parser keeps some of the whitespace of an odd id (quoted
	// local parts with spaces): such ids are also found without any.
	byID, bare := map[string]int{}, map[string]int{}
	for i, m := range msgs {
		if m.id == "" {
			t.Fatalf("%s: a message without Message-ID (the corpus keeps none)", m.file)
		}
		if _, dup := byID[m.id]; dup {
			t.Fatalf("%s: Message-ID <%s> twice (the corpus keeps one)", m.file, m.id)
		}
		byID[m.id] = i
		bare[strings.Join(strings.Fields(m.id), "")] = i
		// notmuch takes a file without From, To or Subject for something
		// else than mail; the corpus keeps no senders, so each gets one.
		file := append([]byte("From: member@example.org\n"), m.raw...)
		if err := os.WriteFile(filepath.Join(maildir, "cur", fmt.Sprintf("%05d:2,", i)), append(file, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "notmuch-config")
	if err := os.WriteFile(conf, []byte("[database]\npath="+maildir+"\n[new]\ntags=\nignore=\n"+
		"[maildir]\nsynchronize_flags=false\n[user]\nname=realmail\nprimary_email=realmail@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "NOTMUCH_CONFIG="+conf, "HOME="+dir, "XDG_CONFIG_HOME="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("notmuch %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	began := time.Now()
	run("new", "--quiet")
	indexed := time.Since(began)
	out := run("show", "--format=json", "--body=false", "--entire-thread=false", "*")
	t.Logf("notmuch: indexed %d messages in %v, threads read in %v", len(msgs), indexed.Round(time.Millisecond), (time.Since(began) - indexed).Round(time.Millisecond))

	// notmuch show: a list of threads, each a list of trees, each tree
	// [message, [trees of its replies]].
	var threads [][]json.RawMessage
	if err := json.Unmarshal(out, &threads); err != nil {
		t.Fatalf("notmuch show: %v", err)
	}
	seen := 0
	var walk func(raw json.RawMessage, conv, parent int)
	walk = func(raw json.RawMessage, conv, parent int) {
		var tree []json.RawMessage
		if err := json.Unmarshal(raw, &tree); err != nil || len(tree) != 2 {
			t.Fatalf("notmuch show: a tree that is not [message, replies]: %.200s", raw)
		}
		var m struct {
			ID string `json:"id"`
		}
		self := parent
		if err := json.Unmarshal(tree[0], &m); err == nil && m.ID != "" {
			i, ok := byID[m.ID]
			if !ok {
				i, ok = bare[strings.Join(strings.Fields(m.ID), "")]
			}
			if !ok {
				t.Fatalf("notmuch show: message %q is none of the corpus's", m.ID)
			}
			if msgs[i].conv >= 0 {
				t.Fatalf("notmuch show: message %q in two threads", m.ID)
			}
			msgs[i].conv, msgs[i].parent = conv, parent
			self = i
			seen++
		}
		var replies []json.RawMessage
		if err := json.Unmarshal(tree[1], &replies); err != nil {
			t.Fatalf("notmuch show: replies: %v", err)
		}
		for _, r := range replies {
			walk(r, conv, self)
		}
	}
	for _, m := range msgs {
		m.conv = -1
	}
	for c, th := range threads {
		for _, tree := range th {
			walk(tree, c, -1)
		}
	}
	if seen != len(msgs) {
		t.Fatalf("notmuch threaded %d of the %d messages", seen, len(msgs))
	}
	return len(threads)
}

// divideAtBareIDs corrects notmuch on one known fault: it joins messages
// through any id they share, ids without "@" too, which name no message
// (an old git-send-email wrote "<yes>" into References). A notmuch thread
// is divided where only such ids join it: what stays together is what
// shares a message's own id or an id with "@" in In-Reply-To or
// References, notmuch's own rule otherwise. It returns the number of
// conversations and of notmuch threads it divided.
func divideAtBareIDs(msgs []*realMsg, nconv int) (int, int) {
	members := make([][]*realMsg, nconv)
	for _, m := range msgs {
		members[m.conv] = append(members[m.conv], m)
	}
	divided := 0
	for c, ms := range members {
		up := map[string]string{} // union-find over ids
		var find func(string) string
		find = func(id string) string {
			if p, ok := up[id]; ok && p != id {
				r := find(p)
				up[id] = r
				return r
			}
			up[id] = id
			return id
		}
		own := make([]string, len(ms))
		for k, m := range ms {
			own[k] = "own:" + m.id
			for _, field := range []string{"In-Reply-To", "References"} {
				for _, id := range policy.ParseIDList(m.get(field)) {
					if strings.Contains(id, "@") {
						up[find(id)] = find(own[k])
					}
				}
			}
			if id, ok := policy.ParseMessageID(m.get("Message-ID")); ok {
				up[find(id)] = find(own[k])
			}
		}
		comp := map[string]int{}
		for k, m := range ms { // date order: the earliest's part keeps the number
			root := find(own[k])
			n, ok := comp[root]
			if !ok {
				n = c
				if len(comp) > 0 {
					n = nconv
					nconv++
				}
				comp[root] = n
			}
			m.conv = n
		}
		if len(comp) > 1 {
			divided++
		}
	}
	return nconv, divided
}

// realMailReport is what the comparison found.
type realMailReport struct {
	messages, conversations, replies, agreed int
	splits                                   int
	merges, distinctMerges                   int
	unreached                                int // disagreements whose archived parents do not lead to the conversation's first
	reachable, reachableAgreed               int // replies whose archived parents lead to the conversation's first, and of them those that agree
	causes                                   map[string]int
	lines                                    []string
}

func TestRealMailThreads(t *testing.T) {
	began := time.Now()
	msgs := loadRealMail(t, filepath.Join("testdata", "realmail"))
	nconv := notmuchConversations(t, msgs)
	replayStart := time.Now()
	replayStormguard(t, msgs)
	t.Logf("stormguard: %d messages decided in %v", len(msgs), time.Since(replayStart).Round(time.Millisecond))

	nthreads := nconv
	var divided int
	nconv, divided = divideAtBareIDs(msgs, nconv)
	t.Logf("notmuch threads %d; divided where only an id without @ joined them: %d; conversations %d", nthreads, divided, nconv)
	r := compareRealMail(msgs, nconv)
	logCorpus(t, msgs)
	for _, l := range r.lines {
		t.Log(l)
	}
	t.Logf("messages %d, conversations %d, replies %d", r.messages, r.conversations, r.replies)
	t.Logf("agreement %d/%d = %.2f%% of replies in their conversation's thread", r.agreed, r.replies, 100*float64(r.agreed)/float64(r.replies))
	t.Logf("disagreements whose parents in the archive do not lead to the conversation's first message: %d", r.unreached)
	t.Logf("agreement of the replies whose parents in the archive lead to the conversation's first message: %d/%d = %.2f%%",
		r.reachableAgreed, r.reachable, 100*float64(r.reachableAgreed)/float64(r.reachable))
	t.Logf("split conversations (one notmuch thread, several stormguard threads): %d", r.splits)
	t.Logf("merged conversations (stormguard threads over several notmuch threads): %d, of distinct conversations: %d", r.merges, r.distinctMerges)
	t.Logf("disagreements by cause:\n%s", countLines(r.causes))
	t.Logf("run time %v", time.Since(began).Round(time.Millisecond))

	if got := float64(r.reachableAgreed) / float64(r.reachable); got < minRealMailAgreement {
		t.Errorf("agreement of the replies whose archived parents reach their conversation's first message %.2f%%, want at least %.2f%%", 100*got, 100*minRealMailAgreement)
	}
	if got := float64(r.agreed) / float64(r.replies); got < minRealMailAgreementAll {
		t.Errorf("agreement of all replies %.2f%%, want at least %.2f%%", 100*got, 100*minRealMailAgreementAll)
	}
	if r.distinctMerges > 0 {
		t.Errorf("%d stormguard threads merge distinct conversations, want 0", r.distinctMerges)
	}
	if r.splits > maxRealMailSplits {
		t.Errorf("%d conversations split over several stormguard threads, want at most %d", r.splits, maxRealMailSplits)
	}
}

// compareRealMail compares stormguard's threads with notmuch's
// conversations and explains every disagreement.
func compareRealMail(msgs []*realMsg, nconv int) realMailReport {
	r := realMailReport{messages: len(msgs), conversations: nconv, causes: map[string]int{}}
	idx := indexByID(msgs)
	members := make([][]int, nconv)
	for i, m := range msgs { // date order, so members[c][0] is the earliest
		members[m.conv] = append(members[m.conv], i)
	}
	convsOf := map[policy.ThreadID][]int{} // stormguard thread -> notmuch conversations
	for c, ms := range members {
		if len(ms) == 0 {
			continue
		}
		first := msgs[ms[0]]
		threads := map[policy.ThreadID]bool{}
		for _, i := range ms {
			m := msgs[i]
			if !threads[m.thread] {
				threads[m.thread] = true
				convsOf[m.thread] = append(convsOf[m.thread], c)
			}
			if i == ms[0] {
				continue
			}
			r.replies++
			reaches := topOf(msgs, i) == ms[0]
			if reaches {
				r.reachable++
			}
			if m.thread == first.thread {
				r.agreed++
				if reaches {
					r.reachableAgreed++
				}
				continue
			}
			cause := clientFamily(m) + ": " + headerShape(m, idx)
			r.causes[cause]++
			// Whether its chain of parents in the archive (notmuch's tree)
			// leads to the conversation's first message: if not, notmuch
			// joined the two only through a message the archive lacks or
			// one that came later, which a threader deciding each message
			// as it comes cannot know.
			reach := "reach"
			if !reaches {
				reach = "do not reach"
				r.unreached++
			}
			r.lines = append(r.lines, fmt.Sprintf("disagree %s <%s> %s | %s | parents %s the first | In-Reply-To %s | References %s | conversation's first <%s> (%s)",
				m.file, m.id, m.date.UTC().Format("2006-01-02"), cause, reach,
				short(m.get("In-Reply-To")), short(m.get("References")), first.id, headerShape(first, idx)))
		}
		if len(threads) > 1 {
			r.splits++
		}
	}
	keys := make([]policy.ThreadID, 0, len(convsOf))
	for th := range convsOf {
		keys = append(keys, th)
	}
	slices.Sort(keys)
	for _, th := range keys {
		cs := convsOf[th]
		if len(cs) < 2 {
			continue
		}
		r.merges++
		kind := "same base subject (a conversation notmuch split for lack of headers)"
		if !shareSubjects(msgs, members, cs) {
			r.distinctMerges++
			kind = "DISTINCT conversations"
		}
		var firsts []string
		for _, c := range cs {
			m := msgs[members[c][0]]
			firsts = append(firsts, fmt.Sprintf("<%s> %q (%d messages)", m.id, baseSubject(m), len(members[c])))
		}
		r.lines = append(r.lines, fmt.Sprintf("merge %s: %d notmuch threads, %s: %s", th, len(cs), kind, strings.Join(firsts, "; ")))
	}
	return r
}

// topOf is the top of message i's chain of parents in notmuch's tree.
func topOf(msgs []*realMsg, i int) int {
	for n := 0; msgs[i].parent >= 0 && n < len(msgs); n++ {
		i = msgs[i].parent
	}
	return i
}

// indexByID finds a message by any id as stormguard parses it.
func indexByID(msgs []*realMsg) map[string]*realMsg {
	idx := map[string]*realMsg{}
	for _, m := range msgs {
		if id, ok := policy.ParseMessageID(m.get("Message-ID")); ok {
			idx[id] = m
		}
	}
	return idx
}

// isReply: the message names a parent.
func isReply(m *realMsg) bool {
	return m.get("In-Reply-To") != "" || m.get("References") != ""
}

// headerShape says how a message's threading headers are written, in the
// terms of the clients' known habits.
func headerShape(m *realMsg, idx map[string]*realMsg) string {
	irtRaw, refsRaw := m.get("In-Reply-To"), m.get("References")
	irt, refs := policy.ParseIDList(irtRaw), policy.ParseIDList(refsRaw)
	for _, id := range append(slices.Clone(irt), refs...) {
		if !strings.Contains(id, "@") {
			return "no @ in id"
		}
	}
	if len(irt) == 0 && len(refs) == 0 {
		switch {
		case irtRaw != "" || refsRaw != "":
			return "threading headers without an id"
		case m.get("Thread-Index") != "":
			return "Thread-Index only"
		case replySubject(m):
			return "no threading headers, subject only"
		}
		return "no threading headers"
	}
	if len(refs) == 0 {
		parent := idx[irt[len(irt)-1]]
		switch {
		case !strings.Contains(irtRaw, "<"):
			return "In-Reply-To without angle brackets"
		case parent == nil:
			return "In-Reply-To only, parent not in archive"
		case isReply(parent):
			return "In-Reply-To only, parent is a reply"
		}
		return "In-Reply-To only"
	}
	parentID := refs[len(refs)-1]
	if len(irt) > 0 {
		parentID = irt[len(irt)-1]
	}
	first := idx[refs[0]]
	switch {
	case len(refs) == 1 && refs[0] == parentID && first != nil && isReply(first):
		return "parent only"
	case len(refs) > 1 && refs[0] == parentID:
		return "newest-first"
	case first != nil && isReply(first) && len(refs) >= 10:
		return "truncated (first id is a reply)"
	case first != nil && isReply(first):
		return "References first id is a reply"
	case first == nil && len(refs) >= 10:
		return "truncated (first id not in archive)"
	case first == nil:
		return "References first id not in archive"
	}
	return "References first id is a root"
}

func replySubject(m *realMsg) bool {
	_, reply := policy.NormalizeSubject(m.get("Subject"))
	return reply
}

func baseSubject(m *realMsg) string {
	base, _ := policy.NormalizeSubject(m.get("Subject"))
	return base
}

// shareSubjects: the conversations are linked, pairwise through a common
// base subject, into one.
func shareSubjects(msgs []*realMsg, members [][]int, convs []int) bool {
	subjects := make([]map[string]bool, len(convs))
	for k, c := range convs {
		subjects[k] = map[string]bool{}
		for _, i := range members[c] {
			subjects[k][baseSubject(msgs[i])] = true
		}
	}
	joined := []int{0}
	for grew := true; grew; {
		grew = false
		for k := range convs {
			if slices.Contains(joined, k) {
				continue
			}
			for _, j := range joined {
				if overlaps(subjects[k], subjects[j]) {
					joined, grew = append(joined, k), true
					break
				}
			}
		}
	}
	return len(joined) == len(convs)
}

func overlaps(a, b map[string]bool) bool {
	for s := range a {
		if s != "" && b[s] {
			return true
		}
	}
	return false
}

// clientFamily names the client that wrote a message, from its User-Agent,
// X-Mailer or X-Newsreader, else from the shape of its Message-ID.
func clientFamily(m *realMsg) string {
	ua := strings.ToLower(m.get("User-Agent") + " " + m.get("X-Mailer") + " " + m.get("X-Newsreader"))
	for _, c := range clientPatterns {
		if c.re.MatchString(ua) {
			return c.family
		}
	}
	id := strings.ToLower(m.id)
	for _, c := range idPatterns {
		if c.re.MatchString(id) {
			return c.family
		}
	}
	if strings.TrimSpace(ua) != "" {
		return "other"
	}
	if m.get("Thread-Index") != "" { // no client name, but Exchange or Outlook passed it on
		return "Outlook/Exchange"
	}
	return "unknown"
}

type clientPattern struct {
	re     *regexp.Regexp
	family string
}

// clientPatterns: the User-Agent/X-Mailer words of each client family,
// most specific first.
var clientPatterns = []clientPattern{
	{regexp.MustCompile(`iphone|ipad|ios mail`), "iPhone/iOS Mail"},
	{regexp.MustCompile(`apple mail|apple message framework`), "Apple Mail"},
	{regexp.MustCompile(`outlook express`), "Outlook Express"},
	{regexp.MustCompile(`outlook-(ios|android)`), "Outlook mobile"},
	{regexp.MustCompile(`outlook|internet mail service|exchange|entourage`), "Outlook/Exchange"},
	{regexp.MustCompile(`hyperkitty|phpmailer`), "list archive's web form"},
	{regexp.MustCompile(`roundcube`), "Roundcube"},
	{regexp.MustCompile(`rainloop|snappymail`), "RainLoop"},
	{regexp.MustCompile(`zimbra`), "Zimbra"},
	{regexp.MustCompile(`lotus notes`), "Lotus Notes"},
	{regexp.MustCompile(`git-send-email`), "git-send-email"},
	{regexp.MustCompile(`thunderbird|mozilla|netscape|seamonkey|icedove`), "Thunderbird/Mozilla"},
	{regexp.MustCompile(`mutt`), "Mutt"},
	{regexp.MustCompile(`claws|sylpheed`), "Claws/Sylpheed"},
	{regexp.MustCompile(`evolution`), "Evolution"},
	{regexp.MustCompile(`kmail|trojit`), "KMail"},
	{regexp.MustCompile(`gnus|emacs|mew|wanderlust|mh-e|notmuch|\bsup\b|mu4e`), "Emacs and other text clients"},
	{regexp.MustCompile(`exmh|nmh|\bmh\b`), "exmh/nmh"},
	{regexp.MustCompile(`alpine|pine`), "Pine/Alpine"},
	{regexp.MustCompile(`squirrelmail|horde|imp\b|webmail|phpgroupware|anglemail|gmail`), "other webmail"},
	{regexp.MustCompile(`eudora`), "Eudora"},
	{regexp.MustCompile(`the bat!`), "The Bat!"},
}

// idPatterns: Message-ID shapes of clients that name themselves nowhere else.
var idPatterns = []clientPattern{
	{regexp.MustCompile(`@mail\.gmail\.com$`), "Gmail"},
	{regexp.MustCompile(`\.outlook\.com$`), "Outlook/Exchange"},
	{regexp.MustCompile(`^(pine|alpine)\.`), "Pine/Alpine"},
	{regexp.MustCompile(`git-send-email`), "git-send-email"},
	{regexp.MustCompile(`\.fsf@`), "Emacs and other text clients"},
}

// logCorpus logs what the corpus is made of: per file, per client family,
// and whom its replies answer (notmuch's parent): the first message of
// their conversation, a reply, or a message the archive lacks.
func logCorpus(t *testing.T, msgs []*realMsg) {
	files, families, answers := map[string]int{}, map[string]int{}, map[string]int{}
	first := map[int]int{} // conversation -> its earliest message
	for i, m := range msgs {
		files[m.file]++
		if _, ok := first[m.conv]; !ok {
			first[m.conv] = i
			continue
		}
		families[clientFamily(m)]++
		switch {
		case m.parent < 0:
			answers["parent not in archive"]++
		case isReply(msgs[m.parent]):
			answers["answers a reply"]++
		default:
			answers["answers its conversation's original"]++
		}
	}
	t.Logf("messages per file:\n%s", countLines(files))
	t.Logf("replies per client family:\n%s", countLines(families))
	t.Logf("replies by what they answer (notmuch's parent):\n%s", countLines(answers))
}

// countLines lists counts, largest first.
func countLines(c map[string]int) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c[keys[i]] != c[keys[j]] {
			return c[keys[i]] > c[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %5d  %s\n", c[k], k)
	}
	return b.String()
}

// short is a header value on one line, cut for the log.
func short(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if v == "" {
		return "-"
	}
	if len(v) > 160 {
		return v[:160] + "…"
	}
	return v
}
