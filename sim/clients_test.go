package sim

import (
	"encoding/base64"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
)

var clientTime = time.Date(2016, 11, 14, 8, 29, 0, 0, time.UTC)

func testRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 1)) }

// chain is n messages by c: an original, then replies each answering
// the one before (a chain), and returns them.
func chain(c Client, n int) []Mail {
	r := testRand(7)
	at := clientTime
	msgs := []Mail{c.Original(r, "boss@example.org", "Budget 2027", at)}
	for i := 1; i < n; i++ {
		at = at.Add(time.Minute)
		msgs = append(msgs, c.Reply(r, "someone@example.org", msgs[i-1], at))
	}
	return msgs
}

// TestClientShapes: each style's original and replies have the shape the
// public archives show for that client: its Message-ID form, its subject
// prefix, its threading headers and its agent header.
func TestClientShapes(t *testing.T) {
	const (
		uuidUpper = `[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}`
		uuidLower = `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
		outlookID = `<[0-9a-f]{12}\$[0-9a-f]{8}\$[0-9a-f]{8}\$@example\.org>`
		notesID   = `<OF[0-9A-F]{8}\.[0-9A-F]{8}-ON[0-9A-F]{8}\.[0-9A-F]{8}-[0-9A-F]{8}\.[0-9A-F]{8}@example\.org>`
	)
	for _, tc := range []struct {
		name    string
		id      string // Message-ID, anchored
		prefix  string // reply subject prefix
		agent   string // "Name: value" of its agent header; "" none
		refs    string // References of the third message of a chain (root r0, r1, r2): ids by index, "" none
		bareIRT bool
		index   string // prefix of a new conversation's Thread-Index; "" none
		topic   bool
	}{
		{"outlook", outlookID, "RE: ", "X-Mailer: Microsoft Outlook 16.0", "0 1", false, "Ad", false},
		{"outlook-norefs", outlookID, "AW: ", "X-Mailer: Microsoft Outlook 14.0", "", false, "Ad", false},
		{"outlook365", `<[A-Z0-9]{5}\d{2}MB\d{4}[0-9A-F]{25}@[A-Z0-9]{5}\d{2}MB\d{4}\.(eur|nam)prd\d{2}\.prod\.outlook\.com>`, "RE: ", "", "0 1", false, "AQ", true},
		{"gmail", `<CA[A-Za-z0-9+_=-]{49}@mail\.gmail\.com>`, "Re: ", "", "0 1", false, "", false},
		{"apple", `<` + uuidUpper + `@example\.org>`, "Re: ", "X-Mailer: Apple Mail (2.3826.700.81)", "0 1", false, "", false},
		{"iphone", `<` + uuidUpper + `@example\.org>`, "Re: ", "X-Mailer: iPhone Mail (22F76)", "1", false, "", false},
		{"thunderbird", `<` + uuidLower + `@example\.org>`, "Re: ", "User-Agent: Mozilla Thunderbird", "0 1", false, "", false},
		{"mutt", `<2016111408(29|3[0-9])00\.G[A-Z]\d+@example\.org>`, "Re: ", "User-Agent: Mutt/1.5.21 (2010-09-15)", "0 1", false, "", false},
		{"roundcube", `<[0-9a-f]{32}@example\.org>`, "Re: ", "User-Agent: Roundcube Webmail/1.6.9", "0 1", false, "", false},
		{"rainloop", `<[0-9a-f]{32}@example\.org>`, "Re: ", "X-Mailer: RainLoop/1.16.0", "1 0", false, "", false},
		{"notes", notesID, "Re: ", "X-Mailer: Lotus Notes Release 8.5.3FP6 SHF907 April 26, 2018", "0 1", false, "", false},
		{"notes7", notesID, "Re: ", "X-Mailer: Lotus Notes Release 7.0.3 September 26, 2007", "", false, "", false},
		{"webform", `<\d{12}\.\d+\.\d+@lists\.example\.org>`, "Re: ", "User-Agent: HyperKitty on https://lists.example.org/", "", true, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := ClientNamed(tc.name)
			if !ok {
				t.Fatalf("no client %q in the catalogue", tc.name)
			}
			msgs := chain(c, 3)
			idRe := regexp.MustCompile(`^` + tc.id + `$`)
			for i, m := range msgs {
				id := m.Get("Message-ID")
				if !idRe.MatchString(id) {
					t.Errorf("message %d: Message-ID %q does not match %s", i, id, tc.id)
				}
				if pid, ok := policy.ParseMessageID(id); !ok || !strings.Contains(pid, "@") {
					t.Errorf("message %d: Message-ID %q is not an id policy reads", i, id)
				}
				if tc.agent != "" {
					name, value, _ := strings.Cut(tc.agent, ": ")
					if m.Get(name) != value {
						t.Errorf("message %d: %s %q, want %q", i, name, m.Get(name), value)
					}
				} else if m.Get("User-Agent")+m.Get("X-Mailer") != "" {
					t.Errorf("message %d: an agent header where the client writes none: %v", i, m)
				}
				if (m.Get("Thread-Topic") != "") != tc.topic || tc.topic && m.Get("Thread-Topic") != "Budget 2027" {
					t.Errorf("message %d: Thread-Topic %q (client writes one: %v)", i, m.Get("Thread-Topic"), tc.topic)
				}
			}
			root, r2 := msgs[0], msgs[2]
			if root.Get("Subject") != "Budget 2027" || root.Get("In-Reply-To")+root.Get("References") != "" {
				t.Errorf("original: %v", root)
			}
			for i, m := range msgs[1:] {
				if got := m.Get("Subject"); got != tc.prefix+"Budget 2027" {
					t.Errorf("reply %d: Subject %q, want %q", i+1, got, tc.prefix+"Budget 2027")
				}
				want := msgs[i].Get("Message-ID")
				if tc.bareIRT {
					want = strings.Trim(want, "<>")
				}
				if got := m.Get("In-Reply-To"); got != want {
					t.Errorf("reply %d: In-Reply-To %q, want the parent's id %q", i+1, got, want)
				}
			}
			var want []string
			for f := range strings.FieldsSeq(tc.refs) {
				want = append(want, msgs[f[0]-'0'].Get("Message-ID"))
			}
			if got := r2.Get("References"); got != strings.Join(want, " ") {
				t.Errorf("second reply's References %q, want %q", got, strings.Join(want, " "))
			}

			// Thread-Index: a new conversation's prefix; each reply keeps the
			// GUID and adds a 5-byte block.
			if tc.index == "" {
				for i, m := range msgs {
					if m.Get("Thread-Index") != "" {
						t.Errorf("message %d: Thread-Index from a client that writes none", i)
					}
				}
				return
			}
			if ti := root.Get("Thread-Index"); !strings.HasPrefix(ti, tc.index) {
				t.Errorf("original's Thread-Index %q, want it to start %q", ti, tc.index)
			}
			guid, _ := policy.ThreadIndexGUID(root.Get("Thread-Index"))
			for i, m := range msgs {
				ti := m.Get("Thread-Index")
				p := policy.Parse(policy.Headers{ThreadIndex: ti})
				b, err := base64.StdEncoding.DecodeString(ti)
				if err != nil || len(b) != 22+5*i || p.ThreadIndex.GUID != guid || guid == "" || p.ThreadIndex.Children != i {
					t.Errorf("message %d: Thread-Index %q (%d bytes, %v): GUID %q, %d children; want %d bytes, GUID %q, %d children",
						i, ti, len(b), err, p.ThreadIndex.GUID, p.ThreadIndex.Children, 22+5*i, guid, i)
				}
			}
		})
	}
	if n := len(Clients()); n != 13 {
		t.Errorf("the catalogue holds %d clients; the table above covers 13", n)
	}
}

// TestClientReferencesAfterInReplyToOnly: a parent with only a one-id
// In-Reply-To (a web form's, an Outlook 2010 reply) makes the RFC 5322
// clients start References with the grandparent, Roundcube with the
// parent, RainLoop with the parent then the grandparent; iPhone Mail
// names the parent alone.
func TestClientReferencesAfterInReplyToOnly(t *testing.T) {
	r := testRand(3)
	root := mustClient("gmail").Original(r, "boss@example.org", "Budget", clientTime)
	for _, parentStyle := range []string{"webform", "outlook-norefs", "notes7"} {
		parent := mustClient(parentStyle).Reply(r, "a@example.org", root, clientTime.Add(time.Minute))
		rootID, pID := root.Get("Message-ID"), parent.Get("Message-ID")
		for style, want := range map[string]string{
			"gmail": rootID + " " + pID, "thunderbird": rootID + " " + pID, "outlook365": rootID + " " + pID,
			"mutt": rootID + " " + pID, "apple": rootID + " " + pID,
			"roundcube": pID, "rainloop": pID + " " + rootID, "iphone": pID,
			"outlook-norefs": "", "notes7": "", "webform": "",
		} {
			reply := mustClient(style).Reply(r, "b@example.org", parent, clientTime.Add(2*time.Minute))
			if got := reply.Get("References"); got != want {
				t.Errorf("%s answering %s: References %q, want %q", style, parentStyle, got, want)
			}
		}
	}
}

// mustClient is ClientNamed for a name the catalogue holds.
func mustClient(name string) Client {
	c, ok := ClientNamed(name)
	if !ok {
		panic("no client " + name)
	}
	return c
}

// TestClientMuttKeepsTen: in a Mutt chain of 13 messages the last
// References holds the last 10 ids only, so it no longer names the root.
func TestClientMuttKeepsTen(t *testing.T) {
	msgs := chain(mustClient("mutt"), 13)
	refs := msgIDs(msgs[12].Get("References"))
	var want []string
	for _, m := range msgs[2:12] {
		want = append(want, m.Get("Message-ID"))
	}
	if !slices.Equal(refs, want) {
		t.Errorf("References of the 12th reply: %q, want the ids of messages 2..11", refs)
	}
	if refs := msgIDs(msgs[10].Get("References")); len(refs) != 10 || refs[0] != msgs[0].Get("Message-ID") {
		t.Errorf("the 10th reply's References %q should still start with the root", refs)
	}
}

// TestClientRainLoopNewestFirst: a RainLoop chain writes References
// newest first: parent, grandparent, ..., root.
func TestClientRainLoopNewestFirst(t *testing.T) {
	msgs := chain(mustClient("rainloop"), 5)
	var want []string
	for i := 3; i >= 0; i-- {
		want = append(want, msgs[i].Get("Message-ID"))
	}
	if got := msgIDs(msgs[4].Get("References")); !slices.Equal(got, want) {
		t.Errorf("References %q, want %q", got, want)
	}
}

// TestClientSubjects: each client replaces only the prefixes it knows, so
// mixed-language threads stack them; policy's base subject is the same
// for all of them.
func TestClientSubjects(t *testing.T) {
	r := testRand(5)
	parent := Mail{{"Message-ID", "<p@example.org>"}, {"Subject", "RE: Budget"}}
	for style, want := range map[string]string{
		"outlook-norefs": "AW: Budget", "outlook": "RE: Budget", "gmail": "Re: Budget", "iphone": "Re: Budget",
	} {
		if got := mustClient(style).Reply(r, "a@example.org", parent, clientTime).Get("Subject"); got != want {
			t.Errorf("%s answering %q: %q, want %q", style, "RE: Budget", got, want)
		}
	}
	german := mustClient("outlook-norefs").Reply(r, "a@example.org", parent, clientTime)
	for style, want := range map[string]string{"outlook": "RE: AW: Budget", "gmail": "Re: AW: Budget", "outlook-norefs": "AW: Budget"} {
		got := mustClient(style).Reply(r, "b@example.org", german, clientTime).Get("Subject")
		if got != want {
			t.Errorf("%s answering %q: %q, want %q", style, "AW: Budget", got, want)
		}
		if base, reply := policy.NormalizeSubject(got); base != "budget" || !reply {
			t.Errorf("policy reads %q as %q (reply %v)", got, base, reply)
		}
	}
	// Exchange's Thread-Topic is the subject without prefixes, kept from
	// the parent when it had one.
	o := mustClient("outlook365").Reply(r, "c@example.org", german, clientTime)
	if got := o.Get("Thread-Topic"); got != "Budget" {
		t.Errorf("Thread-Topic %q, want Budget", got)
	}
}

// TestClientDeterministic: the same random state writes the same message;
// another writes other ids.
func TestClientDeterministic(t *testing.T) {
	for _, c := range Clients() {
		a, b, other := chain(c, 3), chain(c, 3), c.Reply(testRand(99), "someone@example.org", chain(c, 1)[0], clientTime)
		if !slices.EqualFunc(a, b, slices.Equal) {
			t.Errorf("%s: two chains from one seed differ", c.Name)
		}
		if other.Get("Message-ID") == a[1].Get("Message-ID") {
			t.Errorf("%s: another seed gave the same id %s", c.Name, other.Get("Message-ID"))
		}
	}
}

// TestMix: ParseMix reads what String writes, refuses mistakes, and draws
// clients in proportion to their weights.
func TestMix(t *testing.T) {
	m, err := ParseMix(DefaultMix().String())
	if err != nil || !slices.Equal(m, DefaultMix()) {
		t.Fatalf("ParseMix(DefaultMix) = %v, %v", m, err)
	}
	if err := DefaultMix().Validate(); err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, s := range DefaultMix() {
		sum += s.Weight
	}
	if sum != 100 {
		t.Errorf("the default weights add up to %d, want 100 (they read as percentages)", sum)
	}
	if m, err := ParseMix(" iphone = 3 , gmail=1 "); err != nil || !slices.Equal(m, Mix{{"iphone", 3}, {"gmail", 1}}) {
		t.Errorf("spaces: %v, %v", m, err)
	}
	for s, want := range map[string]string{
		"iphone":            `"iphone" is not name=weight`,
		"iphone=x":          `"iphone=x" is not name=weight`,
		"=3":                `"=3" is not name=weight`,
		"pine=3":            `unknown client "pine" (known: outlook, outlook-norefs, outlook365, gmail,`,
		"gmail=1,gmail=2":   `"gmail" is named twice`,
		"gmail=-1,iphone=2": "gmail has a negative weight -1",
		"gmail=0":           "the weights add up to 0",
		"":                  "the weights add up to 0",
	} {
		if _, err := ParseMix(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMix(%q): %v, want %q", s, err, want)
		}
	}
	counts := map[string]int{}
	r := testRand(11)
	mix := Mix{{"iphone", 3}, {"gmail", 1}, {"mutt", 0}}
	for range 4000 {
		counts[mix.pick(r.Float64()).Name]++
	}
	if counts["mutt"] != 0 || counts["iphone"] < 2800 || counts["iphone"] > 3200 || counts["gmail"]+counts["iphone"] != 4000 {
		t.Errorf("4000 draws of iphone=3,gmail=1,mutt=0: %v", counts)
	}
}
