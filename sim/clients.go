package sim

// The client catalogue: how real mail clients write a message's identity
// and threading headers (Message-ID, Subject, In-Reply-To, References,
// Thread-Index, Thread-Topic, User-Agent or X-Mailer), so that a
// simulated storm, and tests elsewhere, carry the header shapes the
// filter meets in real mail. Each entry writes what public list archives
// show that client writing; where a client's rule for References could
// not be seen in an archive, it follows RFC 5322 §3.6.4 and says so.

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Header is one header field as a client writes it: the name spelled as
// the client spells it, the value without the leading space.
type Header struct{ Name, Value string }

// Mail is a message's headers in the order its client wrote them.
type Mail []Header

// Get is the value of the first header called name (in any case), "" when
// there is none.
func (m Mail) Get(name string) string {
	for _, h := range m {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// refsRule is how a client builds References from the message it answers.
type refsRule int

const (
	refsNone        refsRule = iota // no References at all
	refsRFC                         // RFC 5322 §3.6.4: the parent's References, else its one In-Reply-To id, then its Message-ID
	refsAppend                      // the parent's References then its Message-ID, never its In-Reply-To (Roundcube)
	refsParent                      // the parent's Message-ID only (iPhone Mail)
	refsNewestFirst                 // the parent's Message-ID, then its References (else its In-Reply-To) as it wrote them (RainLoop)
	refsLast10                      // refsRFC, keeping only the last 10 ids (Mutt 1.5)
)

// indexStyle is the Thread-Index a client writes.
type indexStyle int

const (
	indexNone    indexStyle = iota
	indexDesktop            // Outlook desktop: a new conversation's index encodes as "Ac…"/"Ad…"
	indexOnline             // Exchange Online and Outlook on the web: "AQ…"
)

// Client is one mail client's way of writing a message. The catalogue
// (Clients) holds one per client style; a Client is a value, safe to copy
// and to use from several goroutines (the randomness comes from the
// caller's *rand.Rand).
type Client struct {
	Name  string // its key in a Mix and in simulate --clients: "outlook365"
	Title string // the client, as people call it

	agent   Header   // its User-Agent or X-Mailer; Name "": it writes none
	prefix  string   // the prefix it puts before a reply's subject: "Re: ", "RE: ", "AW: "
	strips  []string // reply prefixes it recognises on the parent's subject and replaces (without the colon)
	id      func(r *rand.Rand, domain string, at time.Time) string
	refs    refsRule
	bareIRT bool // In-Reply-To without angle brackets
	index   indexStyle
	topic   bool     // writes Thread-Topic (Exchange)
	extra   []Header // further headers it always writes
}

// catalogue is every client style, in the order Clients lists them.
var catalogue = []Client{
	{
		Name: "outlook", Title: "Outlook desktop (2016 and later, IMAP/SMTP account)",
		agent: Header{"X-Mailer", "Microsoft Outlook 16.0"}, prefix: "RE: ", strips: []string{"re"},
		id: outlookDesktopID, refs: refsRFC, index: indexDesktop,
		extra: []Header{{"Content-Language", "en-gb"}},
	},
	{
		Name: "outlook-norefs", Title: "Outlook 2010 desktop, German (In-Reply-To and Thread-Index, no References)",
		agent: Header{"X-Mailer", "Microsoft Outlook 14.0"}, prefix: "AW: ", strips: []string{"aw", "re"},
		id: outlookDesktopID, refs: refsNone, index: indexDesktop,
		extra: []Header{{"Content-Language", "de"}},
	},
	{
		Name: "outlook365", Title: "Outlook with Microsoft 365 (Exchange Online, Outlook on the web)",
		prefix: "RE: ", strips: []string{"re"},
		id: exchangeOnlineID, refs: refsRFC, index: indexOnline, topic: true,
		extra: []Header{{"Accept-Language", "en-GB, en-US"}, {"Content-Language", "en-GB"}, {"X-MS-Has-Attach", ""}, {"X-MS-TNEF-Correlator", ""}},
	},
	{
		Name: "gmail", Title: "Gmail (web and apps)",
		prefix: "Re: ", strips: []string{"re"},
		id: gmailID, refs: refsRFC,
	},
	{
		Name: "apple", Title: "Apple Mail (macOS)",
		agent: Header{"X-Mailer", "Apple Mail (2.3826.700.81)"}, prefix: "Re: ", strips: []string{"re"},
		id: appleID, refs: refsRFC,
		extra: []Header{{"Mime-Version", `1.0 (Mac OS X Mail 16.0 \(3826.700.81\))`}},
	},
	{
		Name: "iphone", Title: "iPhone/iPad Mail (iOS, iCloud)",
		agent: Header{"X-Mailer", "iPhone Mail (22F76)"}, prefix: "Re: ", strips: []string{"re"},
		id: appleID, refs: refsParent,
		extra: []Header{{"Mime-Version", "1.0 (1.0)"}},
	},
	{
		Name: "thunderbird", Title: "Thunderbird",
		agent: Header{"User-Agent", "Mozilla Thunderbird"}, prefix: "Re: ", strips: []string{"re"},
		id: thunderbirdID, refs: refsRFC,
	},
	{
		Name: "mutt", Title: "Mutt 1.5 (References cut to the last 10 ids)",
		agent: Header{"User-Agent", "Mutt/1.5.21 (2010-09-15)"}, prefix: "Re: ", strips: []string{"re"},
		id: muttID, refs: refsLast10,
	},
	{
		Name: "roundcube", Title: "Roundcube Webmail",
		agent: Header{"User-Agent", "Roundcube Webmail/1.6.9"}, prefix: "Re: ", strips: []string{"re"},
		id: hexID, refs: refsAppend,
	},
	{
		Name: "rainloop", Title: "RainLoop Webmail (References newest first)",
		agent: Header{"X-Mailer", "RainLoop/1.16.0"}, prefix: "Re: ", strips: []string{"re"},
		id: hexID, refs: refsNewestFirst,
	},
	{
		Name: "notes", Title: "Lotus Notes 8.5 / 9",
		agent: Header{"X-Mailer", "Lotus Notes Release 8.5.3FP6 SHF907 April 26, 2018"}, prefix: "Re: ", strips: []string{"re"},
		id: notesID, refs: refsRFC,
	},
	{
		Name: "notes7", Title: "Lotus Notes 7 (In-Reply-To only)",
		agent: Header{"X-Mailer", "Lotus Notes Release 7.0.3 September 26, 2007"}, prefix: "Re: ", strips: []string{"re"},
		id: notesID, refs: refsNone,
	},
	{
		Name: "webform", Title: "mailing-list archive web form (bare In-Reply-To, no References)",
		agent: Header{"User-Agent", "HyperKitty on https://lists.example.org/"}, prefix: "Re: ", strips: []string{"re"},
		id: pythonID, refs: refsNone, bareIRT: true,
	},
}

// Clients returns the catalogue: one Client per style, in a fixed order.
func Clients() []Client { return append([]Client(nil), catalogue...) }

// ClientNamed returns the catalogue's client called name.
func ClientNamed(name string) (Client, bool) {
	for _, c := range catalogue {
		if c.Name == name {
			return c, true
		}
	}
	return Client{}, false
}

// Original is a new message (no parent) as c writes it, from the address
// from, at time at. It holds what the client writes about the message
// itself (Message-ID, Subject, Outlook's Thread-Index and Thread-Topic,
// its agent header); the caller adds From, To and Date. The same r state
// gives the same message.
func (c Client) Original(r *rand.Rand, from, subject string, at time.Time) Mail {
	m := Mail{{"Message-ID", c.id(r, domainOf(from), at)}, {"Subject", subject}}
	if c.topic {
		m = append(m, Header{"Thread-Topic", subject})
	}
	if c.index != indexNone {
		m = append(m, Header{"Thread-Index", newThreadIndex(c.index, r, at)})
	}
	return c.finish(m)
}

// Reply is c's reply to parent (the headers the replier's client read:
// Message-ID, In-Reply-To, References, Thread-Index, Thread-Topic and
// Subject), from the address from, at time at, as Original.
func (c Client) Reply(r *rand.Rand, from string, parent Mail, at time.Time) Mail {
	pid := strings.TrimSpace(parent.Get("Message-ID"))
	m := Mail{{"Message-ID", c.id(r, domainOf(from), at)}, {"Subject", c.replySubject(parent.Get("Subject"))}}
	if pid != "" {
		irt := pid
		if c.bareIRT {
			irt = strings.Trim(pid, "<>")
		}
		m = append(m, Header{"In-Reply-To", irt})
		if refs := c.references(pid, parent); len(refs) > 0 {
			m = append(m, Header{"References", strings.Join(refs, " ")})
		}
	}
	if c.topic {
		topic := parent.Get("Thread-Topic")
		if topic == "" {
			topic = normalizedSubject(parent.Get("Subject"))
		}
		m = append(m, Header{"Thread-Topic", topic})
	}
	if c.index != indexNone {
		m = append(m, Header{"Thread-Index", replyThreadIndex(c.index, r, parent.Get("Thread-Index"), at)})
	}
	return c.finish(m)
}

func (c Client) finish(m Mail) Mail {
	if c.agent.Name != "" {
		m = append(m, c.agent)
	}
	return append(m, c.extra...)
}

// replySubject is the parent's subject with one reply prefix c knows
// replaced by c's own; a prefix it does not know stays, so a German
// Outlook answering "RE: x" writes "AW: x" and Gmail answering "AW: x"
// writes "Re: AW: x", as they do.
func (c Client) replySubject(s string) string {
	s = strings.TrimSpace(s)
	if rest, ok := cutPrefix(s, c.strips); ok {
		s = rest
	}
	return c.prefix + s
}

// cutPrefix removes one leading "P:" (or "P :") for a P in prefixes,
// compared without case.
func cutPrefix(s string, prefixes []string) (string, bool) {
	for _, p := range prefixes {
		if len(s) <= len(p) || !strings.EqualFold(s[:len(p)], p) {
			continue
		}
		rest := strings.TrimLeft(s[len(p):], " ")
		if strings.HasPrefix(rest, ":") {
			return strings.TrimSpace(rest[1:]), true
		}
	}
	return s, false
}

// normalizedSubject is MAPI's normalized subject, which Exchange writes as
// Thread-Topic: the subject without one prefix of one to three
// characters (no digit or space) followed by ":" ("RE: ", "AW: ", "SV: ").
func normalizedSubject(s string) string {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, ':')
	if i < 1 || len([]rune(s[:i])) > 3 || strings.ContainsAny(s[:i], " 0123456789") {
		return s
	}
	return strings.TrimSpace(s[i+1:])
}

// references builds c's References for a reply to parent, whose
// Message-ID is pid.
func (c Client) references(pid string, parent Mail) []string {
	prefs := msgIDs(parent.Get("References"))
	var pirt []string // the parent's In-Reply-To, when it names one id
	if ids := msgIDs(parent.Get("In-Reply-To")); len(ids) == 1 {
		pirt = ids
	}
	switch c.refs {
	case refsParent:
		return []string{pid}
	case refsAppend:
		return appendID(prefs, pid)
	case refsNewestFirst:
		if len(prefs) == 0 {
			prefs = pirt
		}
		return appendID([]string{pid}, prefs...)
	case refsRFC, refsLast10:
		if len(prefs) == 0 {
			prefs = pirt
		}
		refs := appendID(prefs, pid)
		if c.refs == refsLast10 && len(refs) > 10 {
			refs = refs[len(refs)-10:]
		}
		return refs
	}
	return nil
}

// appendID appends ids to list, leaving out any it holds already.
func appendID(list []string, ids ...string) []string {
	out := append([]string(nil), list...)
	for _, id := range ids {
		dup := false
		for _, x := range out {
			dup = dup || x == id
		}
		if !dup {
			out = append(out, id)
		}
	}
	return out
}

// msgIDs are the message ids in a References or In-Reply-To value, each
// with its angle brackets, as written; a bare token with an "@" (a web
// form's In-Reply-To) gets brackets, as the clients that copy it write
// it.
func msgIDs(v string) []string {
	var ids []string
	for len(v) > 0 {
		v = strings.TrimLeft(v, " \t\r\n,")
		switch {
		case v == "":
		case v[0] == '<':
			end := strings.IndexByte(v, '>')
			if end < 0 {
				return ids
			}
			ids = append(ids, v[:end+1])
			v = v[end+1:]
		default:
			end := strings.IndexAny(v, " \t\r\n,<")
			if end < 0 {
				end = len(v)
			}
			if tok := v[:end]; strings.Contains(tok, "@") {
				ids = append(ids, "<"+tok+">")
			}
			v = v[end:]
		}
	}
	return ids
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i < len(addr)-1 {
		return strings.Trim(addr[i+1:], "<> ")
	}
	return "example.org"
}

// fileTime is t as a Windows FILETIME: 100 ns since 1601-01-01 UTC.
func fileTime(t time.Time) uint64 {
	return uint64(t.UnixNano()/100) + 116444736000000000
}

// The Message-ID forms, each as the archives show it.

// outlookDesktopID: Outlook without Exchange,
// <001301d66a3a$75ac6c90$610545b0$@example.org>: a counter, the FILETIME
// in two halves, a random part.
func outlookDesktopID(r *rand.Rand, domain string, at time.Time) string {
	ft := fileTime(at)
	return fmt.Sprintf("<%04x%08x$%08x$%08x$@%s>", r.IntN(0x100), ft>>32, ft&0xffffffff, r.Uint32(), domain)
}

// exchangeServers are Exchange Online mailbox server prefixes and their
// datacentre regions, as they appear in Message-IDs.
var exchangeServers = []struct{ prefix, region string }{
	{"AM0PR", "eurprd"}, {"DB9PR", "eurprd"}, {"AS8PR", "eurprd"}, {"VI1PR", "eurprd"},
	{"SN6PR", "namprd"}, {"BY5PR", "namprd"},
}

// exchangeOnlineID: <AM0PR08MB5316D1B1E66F1A0C3B2E9F74A1B2C@AM0PR08MB5316.eurprd08.prod.outlook.com>:
// the mailbox server, hex digits, the server's name.
func exchangeOnlineID(r *rand.Rand, _ string, _ time.Time) string {
	s := exchangeServers[r.IntN(len(exchangeServers))]
	dc := r.IntN(9) + 1
	server := fmt.Sprintf("%s%02dMB%04d", s.prefix, dc, r.IntN(10000))
	return fmt.Sprintf("<%s%s@%s.%s%02d.prod.outlook.com>", server, randomString(r, 25, upperHex), server, s.region, dc)
}

// gmailID: <CAKwvOdnjHbyamsW71FJ=Cd36YfVppp55ftcE_eSDO_z+KE9zeQ@mail.gmail.com>.
func gmailID(r *rand.Rand, _ string, _ time.Time) string {
	return "<CA" + randomString(r, 49, gmailChars) + "@mail.gmail.com>"
}

// appleID: Apple Mail and iPhone Mail, an upper-case UUID at the sender's
// domain.
func appleID(r *rand.Rand, domain string, _ time.Time) string {
	return "<" + strings.ToUpper(uuid(r)) + "@" + domain + ">"
}

// thunderbirdID: a lower-case UUID at the sender's domain.
func thunderbirdID(r *rand.Rand, domain string, _ time.Time) string {
	return "<" + uuid(r) + "@" + domain + ">"
}

// muttID: <20190912083153.GN20699@host>: the UTC time, "G", a letter and
// the process id.
func muttID(r *rand.Rand, domain string, at time.Time) string {
	return fmt.Sprintf("<%s.G%c%d@%s>", at.UTC().Format("20060102150405"), 'A'+r.IntN(26), 1000+r.IntN(60000), domain)
}

// hexID: Roundcube and RainLoop, 32 hex digits at the sender's domain.
func hexID(r *rand.Rand, domain string, _ time.Time) string {
	return "<" + randomString(r, 32, lowerHex) + "@" + domain + ">"
}

// notesID: <OFB742AAB3.BE2A05EA-ON482586CB.001E84DF-482586CB.001EFF57@example.org>.
func notesID(r *rand.Rand, domain string, at time.Time) string {
	day := uint32(at.Unix()/86400) + 0x48250000 // the date part, alike in the ON and the last groups
	return fmt.Sprintf("<OF%08X.%08X-ON%08X.%08X-%08X.%08X@%s>",
		r.Uint32(), r.Uint32(), day, r.Uint32()&0xffffff, day, r.Uint32()&0xffffff, domain)
}

// pythonID: Python's email.utils.make_msgid, as Django and HyperKitty
// write it: <177291892196.2716920.16427579690060790924@lists.example.org>.
func pythonID(r *rand.Rand, domain string, at time.Time) string {
	return fmt.Sprintf("<%d.%d.%d@lists.%s>", at.UnixMilli()/10, 1000+r.IntN(4000000), r.Uint64(), domain)
}

const (
	upperHex   = "0123456789ABCDEF"
	lowerHex   = "0123456789abcdef"
	gmailChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_=-"
)

func randomString(r *rand.Rand, n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// uuid is a random (version 4) UUID in lower case.
func uuid(r *rand.Rand) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.Uint64())
	binary.BigEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Outlook's Thread-Index ([MS-OXOMSG] PidTagConversationIndex, base64): a
// 22-byte header block (0x01, 5 bytes of the time, a 16-byte GUID that
// names the conversation), then 5 bytes per reply.

// newThreadIndex starts a conversation. Outlook desktop keeps FILETIME
// bytes 6..2, so the index encodes as "Ad…" today ("Ac…" before 2009);
// Exchange Online keeps bytes 7..3, so it encodes as "AQ…".
func newThreadIndex(s indexStyle, r *rand.Rand, at time.Time) string {
	ft := fileTime(at)
	shift := 16
	if s == indexOnline {
		shift = 24
	}
	b := make([]byte, 22, 27)
	b[0] = 0x01
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], ft>>shift)
	copy(b[1:6], t[3:8])
	binary.BigEndian.PutUint64(b[6:14], r.Uint64())
	binary.BigEndian.PutUint64(b[14:22], r.Uint64())
	return base64.StdEncoding.EncodeToString(b)
}

// replyThreadIndex is the parent's index with one 5-byte child block
// appended (the time since the parent in its first 4 bytes, a random
// byte), or, when the parent has no usable index, a new conversation
// with one child block, as Outlook writes when it answers other clients.
func replyThreadIndex(s indexStyle, r *rand.Rand, parent string, at time.Time) string {
	b := decodeThreadIndex(parent)
	if b == nil {
		b, _ = base64.StdEncoding.DecodeString(newThreadIndex(s, r, at))
	}
	var child [5]byte
	binary.BigEndian.PutUint32(child[:4], uint32(at.UnixMilli())&0x7fffffff)
	child[4] = byte(r.Uint32())
	return base64.StdEncoding.EncodeToString(append(b, child[:]...))
}

// decodeThreadIndex decodes a Thread-Index value; nil when it is not one.
func decodeThreadIndex(v string) []byte {
	v = strings.TrimRight(strings.Join(strings.Fields(v), ""), "=")
	b, err := base64.RawStdEncoding.DecodeString(v)
	if err != nil || len(b) < 22 || b[0] != 0x01 {
		return nil
	}
	return b
}

// Share is one client's weight in a Mix.
type Share struct {
	Client string // a catalogue name
	Weight int
}

// Mix is how the repliers of a simulated storm are spread over clients:
// each reply's client is drawn with probability weight/sum. The order is
// kept, so the same seed draws the same clients.
type Mix []Share

// DefaultMix is the simulator's default mix of clients: a large
// organisation on Microsoft 365 (as NHSmail is), whose staff reply from
// Outlook at their desks and from phones, with a minority on other
// clients. It is an estimate, not a measurement: marketing-mail open
// counts (Litmus, 1.1 billion opens, July 2020: Gmail 38%, iPhone 28%,
// Apple Mail 10%, Outlook 9%) describe consumers, not a workplace list,
// so Outlook's share is raised to three fifths and the iPhone's kept at a
// fifth; the other clients share what is left by a rough guess. Measured
// figures from a workplace's own mail should replace it.
func DefaultMix() Mix {
	return Mix{
		{"outlook365", 40}, {"outlook", 15}, {"outlook-norefs", 5}, {"iphone", 20},
		{"gmail", 6}, {"apple", 4}, {"thunderbird", 2}, {"notes", 2}, {"notes7", 1},
		{"roundcube", 2}, {"rainloop", 1}, {"mutt", 1}, {"webform", 1},
	}
}

// DefaultReplyShare is the simulator's default share of repliers who
// answer an earlier reply (the last mail of the storm in their inbox, a
// "please stop replying to all") rather than the original. It is drawn
// from the real-mail corpus of milter/testdata/realmail: 1,139 of its
// 1,830 replies answer a reply (62%). Those are discussion lists, not
// storms: no archive of a storm says it.
const DefaultReplyShare = 0.6

// ParseMix reads a mix written as "name=weight,name=weight", e.g.
// "outlook365=30,iphone=20,gmail=20"; spaces around the parts are
// ignored.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		weight, err := strconv.Atoi(strings.TrimSpace(w))
		if !ok || name == "" || err != nil {
			return nil, fmt.Errorf("sim: clients: %q is not name=weight", part)
		}
		m = append(m, Share{name, weight})
	}
	return m, m.Validate()
}

// Validate reports the first bad entry: an unknown client, a client
// named twice, a negative weight, or weights that add up to 0.
func (m Mix) Validate() error {
	sum := 0
	for i, s := range m {
		if _, ok := ClientNamed(s.Client); !ok {
			names := make([]string, len(catalogue))
			for j, c := range catalogue {
				names[j] = c.Name
			}
			return fmt.Errorf("sim: clients: unknown client %q (known: %s)", s.Client, strings.Join(names, ", "))
		}
		for _, t := range m[:i] {
			if t.Client == s.Client {
				return fmt.Errorf("sim: clients: %q is named twice", s.Client)
			}
		}
		if s.Weight < 0 {
			return fmt.Errorf("sim: clients: %s has a negative weight %d", s.Client, s.Weight)
		}
		sum += s.Weight
	}
	if sum == 0 {
		return fmt.Errorf("sim: clients: the weights add up to 0")
	}
	return nil
}

// String is m as ParseMix reads it.
func (m Mix) String() string {
	parts := make([]string, len(m))
	for i, s := range m {
		parts[i] = fmt.Sprintf("%s=%d", s.Client, s.Weight)
	}
	return strings.Join(parts, ",")
}

// pick is the client a draw u in [0,1) falls on.
func (m Mix) pick(u float64) Client {
	sum := 0
	for _, s := range m {
		sum += s.Weight
	}
	x := int(u * float64(sum))
	for _, s := range m {
		if x < s.Weight {
			c, _ := ClientNamed(s.Client)
			return c
		}
		x -= s.Weight
	}
	c, _ := ClientNamed(m[len(m)-1].Client) // u rounding up to 1
	return c
}
