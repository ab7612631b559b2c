package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func isKey(k Key) bool {
	if len(k) != 32 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// linkStore simulates the store's identity links: every recorded message's
// Links point at the thread it was resolved to.
type linkStore struct {
	links map[Key]ThreadID
}

func (s *linkStore) deliver(t *testing.T, name string, h Headers, lists []string) (ThreadID, Source) {
	t.Helper()
	if s.links == nil {
		s.links = make(map[Key]ThreadID)
	}
	id := Identify(Parse(h), lists)
	found := make([]ThreadID, len(id.Lookup))
	for i, k := range id.Lookup {
		found[i] = s.links[k]
	}
	thread, src := Resolve(id, found)
	if thread == "" {
		t.Fatalf("%s: no thread", name)
	}
	for _, k := range id.Links {
		s.links[k] = thread
	}
	return thread, src
}

// Realistic header sets, as the milter hands them over: leading spaces,
// folding, each client's own habits.
const (
	origID      = "<AM6PR04MB5863C1E0D2F9A1B7E4C3A2D5F6E7A8B9@AM6PR04MB5863.eurprd04.prod.outlook.com>"
	gmailID     = "<CAKx8Pz3nQ7vYc2Lr+0hT5wUe9fJ1bGd=Xs4mN6pA@mail.gmail.com>"
	outlookID   = "<DB7PR02MB4411A7E2F0C9B8D6E5A4B3C2D1E0F9A8@DB7PR02MB4411.eurprd02.prod.outlook.com>"
	birdID      = "<3b9e0c4a-6f1d-4e2b-9a7c-5d8e1f2a3b4c@example.org>"
	appleID     = "<8E1B3C2A-4D5F-4A6B-9C7D-0E1F2A3B4C5D@example.org>"
	phoneID     = "<1700000000.12345.android@phone.example.net>"
	webmailID   = "<20161114083301.Horde.aB3dE5fG7hI9@webmail.example.com>"
	germanID    = "<FR2P281MB0123456789ABCDEF0123456789ABCDEF@FR2P281MB0123.DEUP281.PROD.OUTLOOK.COM>"
	allStaff    = "all-staff@example.org"
	allStaffHdr = " All Staff <All-Staff@example.org>"
)

var convGUID = "4a7f1e2d9c3b4a5e8f6d7c8b9a0e1f2d"

func realisticStorm() []struct {
	client string
	h      Headers
} {
	return []struct {
		client string
		h      Headers
	}{
		{"Outlook original", Headers{
			MessageID: " " + origID, ThreadIndex: " " + makeThreadIndex(convGUID, 0),
			Subject: " Quarterly results", From: " HR <hr@example.org>", To: []string{allStaffHdr},
		}},
		{"Gmail reply", Headers{
			MessageID: " " + gmailID, InReplyTo: " " + origID, References: " " + origID,
			Subject: " Re: Quarterly results", To: []string{" HR <hr@example.org>"}, Cc: []string{allStaffHdr},
		}},
		{"Outlook reply, Thread-Index only", Headers{
			MessageID: " " + outlookID, ThreadIndex: " " + makeThreadIndex(convGUID, 1),
			Subject: " RE: Quarterly results", To: []string{" HR <hr@example.org>; All Staff\r\n <all-staff@example.org>"},
		}},
		{"Thunderbird reply to the Gmail reply", Headers{
			MessageID: " " + birdID, InReplyTo: " " + gmailID, References: " " + origID + "\r\n " + gmailID,
			Subject: " Re: Quarterly results", To: []string{" Bob <bob@gmail.example>"}, Cc: []string{allStaffHdr, " HR <hr@example.org>"},
		}},
		{"Apple Mail reply to the Outlook reply", Headers{
			MessageID: " " + appleID, InReplyTo: " " + outlookID, References: " " + outlookID,
			Subject: " Re: Quarterly results", To: []string{allStaffHdr},
		}},
		{"phone reply with In-Reply-To only, to the Thunderbird reply", Headers{
			MessageID: " " + phoneID, InReplyTo: " " + birdID,
			Subject: " Re: Quarterly results", To: []string{allStaffHdr},
		}},
		{"webmail reply with a reply subject only", Headers{
			MessageID: " " + webmailID, Subject: " =?UTF-8?B?5Zue5aSN77yaUXVhcnRlcmx5IHJlc3VsdHM=?=", To: []string{allStaffHdr},
		}},
		{"German Outlook reply to the Apple reply", Headers{
			MessageID: " " + germanID, InReplyTo: " " + appleID, ThreadIndex: " " + makeThreadIndex(convGUID, 2),
			Subject: " AW: Quarterly results", To: []string{allStaffHdr},
		}},
		{"subject only, no Message-ID at all", Headers{
			Subject: " [EXT] SV: Quarterly results", To: []string{allStaffHdr},
		}},
	}
}

func TestMixedClientsOneThread(t *testing.T) {
	var s linkStore
	msgs := realisticStorm()
	want := MessageIDKey("AM6PR04MB5863C1E0D2F9A1B7E4C3A2D5F6E7A8B9@am6pr04mb5863.eurprd04.prod.outlook.com").Thread()
	wantSrc := []Source{SourceNew, SourceAncestor, SourceThreadIndex, SourceAncestor, SourceAncestor,
		SourceAncestor, SourceSubject, SourceAncestor, SourceSubject}
	for i, m := range msgs {
		t.Run(m.client, func(t *testing.T) {
			_, lists := Audience(nil, ParseAddressList(append(m.h.To, m.h.Cc...)), map[string]int{allStaff: 850000})
			got, src := s.deliver(t, m.client, m.h, lists)
			if got != want || src != wantSrc[i] {
				t.Errorf("thread %s via %s, want %s via %s", got, src, want, wantSrc[i])
			}
			if id := Identify(Parse(m.h), lists); id.Reply != (i > 0) || id.Subject != "quarterly results" {
				t.Errorf("Reply = %v, Subject = %q", id.Reply, id.Subject)
			}
		})
	}
}

// TestUnseenOriginal: when the original went by before stormguard saw it,
// replies from mixed clients still agree on one thread.
func TestUnseenOriginal(t *testing.T) {
	var s linkStore
	lists := []string{allStaff}
	msgs := realisticStorm()[1:]
	first, _ := s.deliver(t, msgs[0].client, msgs[0].h, lists)
	for _, m := range msgs[1:] {
		t.Run(m.client, func(t *testing.T) {
			if got, src := s.deliver(t, m.client, m.h, lists); got != first {
				t.Errorf("thread %s via %s, want %s", got, src, first)
			}
		})
	}
	t.Run("fast path without asking the store", func(t *testing.T) {
		id := Identify(Parse(msgs[0].h), lists)
		if got, src := Resolve(id, nil); got != first || src != SourceReferences {
			t.Errorf("Resolve(nil) = %s via %s, want %s via references", got, src, first)
		}
	})
}

func TestUnrelatedThreadsStayApart(t *testing.T) {
	var s linkStore
	lunch := Headers{MessageID: "<a@x>", Subject: "Lunch", To: []string{allStaffHdr}}
	t1, _ := s.deliver(t, "original", lunch, []string{allStaff})
	tests := []struct {
		name  string
		h     Headers
		lists []string
	}{
		{"same subject to another list", Headers{MessageID: "<b@x>", Subject: "Re: Lunch"}, []string{"london@example.org"}},
		{"same subject without a list", Headers{MessageID: "<c@x>", Subject: "Re: Lunch"}, nil},
		{"other subject, same list", Headers{MessageID: "<d@x>", Subject: "Re: Dinner"}, []string{allStaff}},
		{"other Thread-Index", Headers{MessageID: "<e@x>", Subject: "RE: Breakfast", ThreadIndex: makeThreadIndex(testGUID, 1)}, []string{allStaff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := s.deliver(t, tt.name, tt.h, tt.lists); got == t1 {
				t.Errorf("joined the Lunch thread %s", t1)
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	lists := []string{"B@x.org", "<a@x.org>", "a@x.org"}
	subj := SubjectKey("hello", []string{"a@x.org", "b@x.org"})
	tix := makeKey(kindThreadIndex, testGUID)
	own, parent, mid, root := MessageIDKey("own@x"), MessageIDKey("parent@x"), MessageIDKey("mid@x"), MessageIDKey("root@x")
	anc := SourceAncestor
	tests := []struct {
		name    string
		h       Headers
		lists   []string
		want    Identity
		wantSrc []Source
	}{
		{"original", Headers{MessageID: "<own@X>", Subject: "Hello"}, lists,
			Identity{Own: own, Links: []Key{own, subj}, Subject: "hello"}, nil},
		{"original without lists has no subject key", Headers{MessageID: "<own@x>", Subject: "Hello"}, nil,
			Identity{Own: own, Links: []Key{own}, Subject: "hello"}, nil},
		{"references: every ancestor, nearest first, then the GUID", Headers{MessageID: "<own@x>", References: "<root@x> <mid@x> <parent@x>", InReplyTo: "<parent@x>", Subject: "Re: Hello", ThreadIndex: makeThreadIndex(testGUID, 2)}, lists,
			Identity{Own: own, Root: root, Lookup: []Key{parent, mid, root, tix}, Links: []Key{own, tix, subj}, Reply: true, Subject: "hello"}, []Source{anc, anc, anc, SourceThreadIndex}},
		{"RainLoop: References newest first", Headers{MessageID: "<own@x>", References: "<parent@x> <mid@x> <root@x>", InReplyTo: "<parent@x>", Subject: "Re: Hello"}, lists,
			Identity{Own: own, Root: parent, Lookup: []Key{parent, root, mid}, Links: []Key{own, subj}, Reply: true, Subject: "hello"}, []Source{anc, anc, anc}},
		{"iPhone Mail: the parent only", Headers{MessageID: "<own@x>", References: "<parent@x>", InReplyTo: "<parent@x>", Subject: "Re: Hello"}, lists,
			Identity{Own: own, Root: parent, Lookup: []Key{parent}, Links: []Key{own, subj}, Reply: true, Subject: "hello"}, []Source{anc}},
		{"in-reply-to: last id first, no subject lookup", Headers{MessageID: "<own@x>", InReplyTo: "<root@x> <parent@x>", Subject: "Hello"}, lists,
			Identity{Own: own, Root: parent, Lookup: []Key{parent, root}, Links: []Key{own, subj}, Reply: true, Subject: "hello"}, []Source{anc, anc}},
		{"in-reply-to and the GUID", Headers{MessageID: "<own@x>", InReplyTo: "<parent@x>", Subject: "RE: Hello", ThreadIndex: makeThreadIndex(testGUID, 1)}, lists,
			Identity{Own: own, Root: parent, Lookup: []Key{parent, tix}, Links: []Key{own, tix, subj}, Reply: true, Subject: "hello"}, []Source{anc, SourceThreadIndex}},
		{"no ancestor ids: the GUID, then the subject", Headers{MessageID: "<own@x>", Subject: "RE: Hello", ThreadIndex: makeThreadIndex(testGUID, 1)}, lists,
			Identity{Own: own, Lookup: []Key{tix, subj}, Links: []Key{own, tix, subj}, Reply: true, Subject: "hello"}, []Source{SourceThreadIndex, SourceSubject}},
		{"ids without @ are no ancestors", Headers{MessageID: "<own@x>", References: "<yes> <1234.5678> <@x> <a@> <root@x>", InReplyTo: "<yes>", Subject: "Re: Hello"}, lists,
			Identity{Own: own, Root: root, Lookup: []Key{root}, Links: []Key{own, subj}, Reply: true, Subject: "hello"}, []Source{anc}},
		{"only ids without @: the subject", Headers{MessageID: "<own@x>", References: "<yes>", InReplyTo: "<yes>", Subject: "Re: Hello"}, lists,
			Identity{Own: own, Lookup: []Key{subj}, Links: []Key{own, subj}, Reply: true, Subject: "hello"}, []Source{SourceSubject}},
		{"its own id in References is skipped", Headers{MessageID: "<own@x>", References: "<own@x> <root@x> <own@x>", Subject: "Re: Hello"}, lists,
			Identity{Own: own, Root: root, Lookup: []Key{root}, Links: []Key{own, subj}, Reply: true, Subject: "hello"}, []Source{anc}},
		{"an id twice counts once", Headers{MessageID: "<own@x>", References: "<root@x> <parent@x> <root@x>", InReplyTo: "<parent@x> <parent@x>"}, lists,
			Identity{Own: own, Root: root, Lookup: []Key{parent, root}, Links: []Key{own}, Reply: true}, []Source{anc, anc}},
		{"thread-index children make a reply", Headers{ThreadIndex: makeThreadIndex(testGUID, 1), Subject: "Hello"}, nil,
			Identity{Lookup: []Key{tix}, Links: []Key{tix}, Reply: true, Subject: "hello"}, []Source{SourceThreadIndex}},
		{"thread-index of a new conversation does not", Headers{ThreadIndex: makeThreadIndex(testGUID, 0), Subject: "Hello"}, nil,
			Identity{Links: []Key{tix}, Subject: "hello"}, nil},
		{"forward only is no reply", Headers{MessageID: "<own@x>", Subject: "Fwd: Hello"}, lists,
			Identity{Own: own, Links: []Key{own, subj}, Subject: "hello"}, nil},
		{"in-reply-to its own id", Headers{MessageID: "<own@x>", InReplyTo: "<own@x>"}, nil,
			Identity{Own: own, Links: []Key{own}, Reply: true}, nil},
		{"nothing at all", Headers{}, nil, Identity{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Identify(Parse(tt.h), tt.lists)
			tt.want.Sources = tt.wantSrc
			if tt.want.Root != "" {
				tt.want.RootFrom = SourceReferences
				if tt.h.References == "" {
					tt.want.RootFrom = SourceInReplyTo
				}
			}
			if got.Own != tt.want.Own || got.Root != tt.want.Root || got.RootFrom != tt.want.RootFrom || got.Reply != tt.want.Reply || got.Subject != tt.want.Subject ||
				!slices.Equal(got.Lookup, tt.want.Lookup) || !slices.Equal(got.Sources, tt.want.Sources) || !slices.Equal(got.Links, tt.want.Links) {
				t.Errorf("Identify =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
	t.Run("report subject capped", func(t *testing.T) {
		id := Identify(Parse(Headers{Subject: strings.Repeat("ab ", 300)}), nil)
		if n := utf8.RuneCountInString(id.Subject); n > maxReportRunes {
			t.Errorf("Subject has %d runes", n)
		}
	})
}

func TestResolve(t *testing.T) {
	a, b, c, own := MessageIDKey("a"), MessageIDKey("b"), MessageIDKey("c"), MessageIDKey("own")
	id := Identity{Own: own, Lookup: []Key{a, b, c}, Sources: []Source{SourceThreadIndex, SourceSubject, SourceSubject}}
	refs := Identity{Own: own, Root: c, RootFrom: SourceReferences, Lookup: []Key{a, b, c}, Sources: []Source{SourceAncestor, SourceAncestor, SourceAncestor}}
	tests := []struct {
		name  string
		id    Identity
		found []ThreadID
		want  ThreadID
		src   Source
	}{
		{"ancestors, not asked: the root", refs, nil, c.Thread(), SourceReferences},
		{"ancestors, none linked: the root", refs, []ThreadID{"", "", ""}, c.Thread(), SourceReferences},
		{"the root linked elsewhere", refs, []ThreadID{"", "", "00000000000000aa"}, "00000000000000aa", SourceAncestor},
		{"two threads: the nearest ancestor's", refs, []ThreadID{"", "00000000000000bb", "00000000000000aa"}, "00000000000000bb", SourceAncestor},
		{"first found wins", id, []ThreadID{"", "00000000000000bb", "00000000000000cc"}, "00000000000000bb", SourceSubject},
		{"nothing found: first lookup key", id, []ThreadID{"", "", ""}, a.Thread(), SourceThreadIndex},
		{"store not asked", id, nil, a.Thread(), SourceThreadIndex},
		{"found longer than Lookup", Identity{Own: own}, []ThreadID{"00000000000000dd"}, own.Thread(), SourceNew},
		{"found shorter than Lookup", id, []ThreadID{""}, a.Thread(), SourceThreadIndex},
		{"new thread", Identity{Own: own}, nil, own.Thread(), SourceNew},
		{"nothing at all", Identity{}, nil, "", SourceNew},
		{"hand-made identity without Sources", Identity{Lookup: []Key{b}}, []ThreadID{"00000000000000ee"}, "00000000000000ee", SourceAncestor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, src := Resolve(tt.id, tt.found)
			if got != tt.want || src != tt.src {
				t.Errorf("Resolve = %s, %s; want %s, %s", got, src, tt.want, tt.src)
			}
		})
	}
}

func FuzzIdentify(f *testing.F) {
	f.Add(origID, "", "", makeThreadIndex(convGUID, 0), "Quarterly results", allStaff)
	f.Add(appleID, outlookID, outlookID, "", "Re: Quarterly results", allStaff+",london@example.org")
	f.Add("", "<a@x", "<<b@y>", "AQHZ===", "=?utf-8?B?5Zue5aSN77ya?=", "<A@X>, ,")
	f.Add("\xff", "\x00", "(", "\r\n", "[x] Re[2]: \u200f", "\xfe@\xff")
	f.Fuzz(func(t *testing.T, mid, irt, refs, tix, subject, lists string) {
		h := Headers{MessageID: mid, InReplyTo: irt, References: refs, ThreadIndex: tix, Subject: subject}
		id := Identify(Parse(h), strings.Split(lists, ","))
		for _, k := range append([]Key{id.Own, id.Root}, append(id.Lookup, id.Links...)...) {
			if k != "" && !isKey(k) {
				t.Fatalf("bad key %q", k)
			}
		}
		if len(id.Lookup) != len(id.Sources) || len(id.Lookup) > MaxLookup || len(id.Links) > 3 {
			t.Fatalf("Lookup %d, Sources %d, Links %d", len(id.Lookup), len(id.Sources), len(id.Links))
		}
		for i, k := range id.Links {
			if k == "" || slices.Contains(id.Links[:i], k) {
				t.Fatalf("Links %q", id.Links)
			}
		}
		if id.Root != "" && (!slices.Contains(id.Lookup, id.Root) || id.Root == id.Own || !id.Reply) {
			t.Fatalf("Root %q, Own %q, Lookup %q", id.Root, id.Own, id.Lookup)
		}
		for i, k := range id.Lookup {
			if k == "" || k == id.Own || slices.Contains(id.Lookup[:i], k) {
				t.Fatalf("Lookup %q, Own %q", id.Lookup, id.Own)
			}
		}
		if !id.Reply && len(id.Lookup) > 0 {
			t.Fatalf("an original looks up %q", id.Lookup)
		}
		if !utf8.ValidString(id.Subject) || utf8.RuneCountInString(id.Subject) > maxReportRunes {
			t.Fatalf("Subject %q", id.Subject)
		}
		thread, src := Resolve(id, nil)
		if thread != "" && (len(thread) != 16 || !isKey(Key(thread+thread))) {
			t.Fatalf("thread %q", thread)
		}
		if thread == "" && (id.Own != "" || len(id.Lookup) > 0 || src != SourceNew) {
			t.Fatalf("no thread for %+v", id)
		}
		if again, _ := Resolve(id, make([]ThreadID, len(id.Lookup))); again != thread {
			t.Fatalf("empty answers changed the thread: %s, %s", thread, again)
		}
	})
}

func ExampleIdentify() {
	h := Headers{
		MessageID: " <CAKx8Pz3@mail.gmail.com>",
		InReplyTo: " <AM6PR04MB5863@AM6PR04MB5863.eurprd04.prod.outlook.com>",
		Subject:   " =?UTF-8?Q?AW:_[all-staff]_Quartalsergebnisse?=",
		To:        []string{" All Staff <all-staff@example.org>"},
	}
	m := Parse(h) // once, where the message enters policy
	_, lists := Audience(nil, m.Recipients, map[string]int{"all-staff@example.org": 850000})
	id := Identify(m, lists)
	fmt.Println(id.Reply, id.Subject, id.Sources)

	// Nothing known about the parent yet: the reply takes the parent's
	// thread, like every other reply to it.
	thread, src := Resolve(id, []ThreadID{""})
	fmt.Println(thread == MessageIDKey("AM6PR04MB5863@am6pr04mb5863.eurprd04.prod.outlook.com").Thread(), src)

	// The parent was counted in a storm: the reply is counted there too.
	thread, src = Resolve(id, []ThreadID{"3f9a0c1d2b4e5f60"})
	fmt.Println(thread, src)
	// Output:
	// true quartalsergebnisse [ancestor]
	// true in-reply-to
	// 3f9a0c1d2b4e5f60 ancestor
}

// Site.Plan runs Parse, Audience, IsAutoReply and (at least for
// large-audience mail) Identify on every message.
func BenchmarkPerMessage(b *testing.B) {
	h := realisticStorm()[1].h // the Gmail reply
	lists := map[string]int{allStaff: 850000}
	b.ReportAllocs()
	for b.Loop() {
		m := Parse(h)
		_, large := Audience([]string{allStaff}, m.Recipients, lists)
		IsAutoReply(m)
		Identify(m, large)
	}
}
