package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		h    Headers
		want Message
	}{
		{"nothing", Headers{}, Message{}},
		{"folded reply from Thunderbird", Headers{
			MessageID:  " <3b9e0c4a@Example.ORG>",
			InReplyTo:  " <parent@example.org>",
			References: " <root@example.org>\r\n <parent@example.org>",
			Subject:    " Re: [all-staff]\r\n Quarterly results",
			To:         []string{" Bob <Bob@example.org>"},
			Cc:         []string{" All Staff <All-Staff@example.org>, bob@example.org"},
		}, Message{
			MessageID:  "3b9e0c4a@example.org",
			InReplyTo:  []string{"parent@example.org"},
			References: []string{"root@example.org", "parent@example.org"},
			Recipients: []string{"bob@example.org", "all-staff@example.org"},
			Subject:    Subject{Base: "quarterly results", Reply: true, Display: "Re: [all-staff] Quarterly results"},
		}},
		{"Outlook automatic reply", Headers{
			ThreadIndex:   " " + makeThreadIndex(testGUID, 2),
			Subject:       " =?UTF-8?Q?Automatic_reply:_RE:_Hello?=",
			AutoSubmitted: " Auto-Replied; owner-email=\"a@x\"",
			XAutoreply:    "no",
			XAutorespond:  " Yes",
		}, Message{
			ThreadIndex:   ThreadIndex{GUID: testGUID, Children: 2},
			Subject:       Subject{Base: "automatic reply: re: hello", OutOfOffice: true, Display: "Automatic reply: RE: Hello"},
			AutoSubmitted: "auto-replied",
			XAutorespond:  true,
		}},
		{"list post of a delivery report", Headers{
			Precedence:  " Bulk",
			ListID:      "\r\n <staff.example.org>",
			ContentType: " multipart/report;\r\n\treport-type=delivery-status; boundary=b",
		}, Message{Precedence: "bulk", ListID: true, Report: true}},
		{"unusable thread-index has no children", Headers{ThreadIndex: makeThreadIndex(strings.Repeat("00", 16), 3)}, Message{}},
		{"blank List-Id is absent", Headers{ListID: " \r\n "}, Message{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.h); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

// checkParse checks that each field of Parse(h) is what the header's own
// parser gives for it, and that the fields stay within their bounds.
func checkParse(t *testing.T, h Headers) Message {
	t.Helper()
	m := Parse(h)
	mid, ok := ParseMessageID(h.MessageID)
	if m.MessageID != mid || ok != (mid != "") {
		t.Fatalf("MessageID %q, ParseMessageID %q, %v", m.MessageID, mid, ok)
	}
	if irt := ParseIDList(h.InReplyTo); !slices.Equal(m.InReplyTo, irt) {
		t.Fatalf("InReplyTo %q, ParseIDList %q", m.InReplyTo, irt)
	}
	if refs := ParseIDList(h.References); !slices.Equal(m.References, refs) {
		t.Fatalf("References %q, ParseIDList %q", m.References, refs)
	}
	for _, ids := range [][]string{m.InReplyTo, m.References} {
		if len(ids) > maxIDs {
			t.Fatalf("%d ids", len(ids))
		}
		for _, id := range ids {
			checkID(t, id)
		}
	}
	if rcpts := ParseAddressList(append(append([]string(nil), h.To...), h.Cc...)); !slices.Equal(m.Recipients, rcpts) {
		t.Fatalf("Recipients %q, ParseAddressList %q", m.Recipients, rcpts)
	}
	if guid, ok := ThreadIndexGUID(h.ThreadIndex); m.ThreadIndex.GUID != guid || ok != (guid != "") {
		t.Fatalf("ThreadIndex %+v, ThreadIndexGUID %q, %v", m.ThreadIndex, guid, ok)
	}
	if m.ThreadIndex.Children < 0 || (m.ThreadIndex.GUID == "" && m.ThreadIndex.Children != 0) {
		t.Fatalf("ThreadIndex %+v", m.ThreadIndex)
	}
	if base, reply := NormalizeSubject(h.Subject); m.Subject.Base != base || m.Subject.Reply != reply {
		t.Fatalf("Subject %+v, NormalizeSubject %q, %v", m.Subject, base, reply)
	}
	if d := DisplaySubject(h.Subject); m.Subject.Display != d {
		t.Fatalf("Display %q, DisplaySubject %q", m.Subject.Display, d)
	}
	if !utf8.ValidString(m.Subject.Display) || utf8.RuneCountInString(m.Subject.Display) > maxReportRunes {
		t.Fatalf("Display %q", m.Subject.Display)
	}
	for _, tok := range []string{m.AutoSubmitted, m.Precedence} {
		if len(tok) > 64*utf8.UTFMax || tok != strings.ToLower(tok) || strings.ContainsAny(tok, "; \t\r\n(") {
			t.Fatalf("token %q", tok)
		}
	}
	if again := Parse(h); !reflect.DeepEqual(again, m) {
		t.Fatalf("Parse is not deterministic:\n %+v\n %+v", m, again)
	}
	return m
}

func TestParseAgreesWithTheParsers(t *testing.T) {
	for _, m := range realisticStorm() {
		t.Run(m.client, func(t *testing.T) { checkParse(t, m.h) })
	}
}

func FuzzParse(f *testing.F) {
	for _, m := range realisticStorm()[:3] {
		h := m.h
		f.Add(h.MessageID, h.InReplyTo, h.References, h.ThreadIndex, h.Subject, strings.Join(h.To, "\n"), strings.Join(h.Cc, "\n"), "", "", "", "")
	}
	f.Add("<v@x>", "<p@x>", "", "", "Automatic reply: Hello", "all-staff@example.org", "", "auto-replied", "bulk", "yes",
		"multipart/report; report-type=disposition-notification; boundary=\"b")
	f.Add("\xff", "\x00", "(", "\r\n", "[x] Re[2]: \u200f", "\xfe@\xff", "a: b@c;", "(", "\"", "=?x?q?y?=", "multipart/report; report-type=\"")
	f.Fuzz(func(t *testing.T, mid, irt, refs, tix, subject, to, cc, autoSubmitted, precedence, xAutoreply, contentType string) {
		h := Headers{
			MessageID: mid, InReplyTo: irt, References: refs, ThreadIndex: tix, Subject: subject,
			To: strings.Split(to, "\n"), Cc: strings.Split(cc, "\n"),
			AutoSubmitted: autoSubmitted, Precedence: precedence, XAutoreply: xAutoreply, XAutorespond: xAutoreply,
			ContentType: contentType, ListID: precedence,
		}
		m := checkParse(t, h)
		if m.XAutoreply != m.XAutorespond {
			t.Fatalf("X-Autoreply %v and X-Autorespond %v of one value", m.XAutoreply, m.XAutorespond)
		}
		strong := m.AutoSubmitted == "auto-replied" || m.Report || m.XAutoreply || m.Subject.OutOfOffice
		signal := strong || m.AutoSubmitted != "" && m.AutoSubmitted != "no" || m.Precedence != ""
		if auto := IsAutoReply(m); strong && !auto || auto && !signal {
			t.Fatalf("IsAutoReply = %v for %+v", auto, m)
		}
	})
}

func ExampleParse() {
	m := Parse(Headers{
		MessageID:  " <CAKx8Pz3@Mail.Gmail.com>",
		References: " <root@example.org>\r\n <parent@example.org>",
		Subject:    " =?UTF-8?Q?AW:_[all-staff]_Quartalsergebnisse?=",
		To:         []string{" All Staff <All-Staff@example.org>, boss@example.org"},
	})
	fmt.Println(m.MessageID, m.References, m.Recipients)
	fmt.Printf("%q %v %q\n", m.Subject.Base, m.IsReply(), m.Subject.Display)
	// Output:
	// CAKx8Pz3@mail.gmail.com [root@example.org parent@example.org] [all-staff@example.org boss@example.org]
	// "quartalsergebnisse" true "AW: [all-staff] Quartalsergebnisse"
}
