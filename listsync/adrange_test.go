package listsync

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Active Directory cannot run here; adServer speaks just enough LDAP
// (bind, search, unbind) to answer the way AD answers a group with more
// member values than its MaxValRange: "member;range=0-1499", then one
// range per base search, the last ending in "*".
type adServer struct {
	ln      net.Listener
	members []string
	step    int
}

func startAD(t *testing.T, members []string, step int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &adServer{ln: ln, members: members, step: step}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return "ldap://" + ln.Addr().String()
}

func (s *adServer) serve(c net.Conn) {
	defer c.Close()
	for {
		p, err := ber.ReadPacket(c)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id := p.Children[0].Value.(int64)
		op := p.Children[1]
		switch op.Tag {
		case ldap.ApplicationBindRequest:
			s.send(c, id, result(ldap.ApplicationBindResponse))
		case ldap.ApplicationSearchRequest:
			base := op.Children[0].Value.(string)
			var attrs []string
			for _, a := range op.Children[7].Children {
				attrs = append(attrs, a.Value.(string))
			}
			s.search(c, id, base, attrs)
			s.send(c, id, result(ldap.ApplicationSearchResultDone))
		default: // unbind, abandon
			return
		}
	}
}

func (s *adServer) search(c net.Conn, id int64, base string, attrs []string) {
	const dn = "CN=All Staff,OU=Groups,DC=corp,DC=example,DC=org"
	lo := 0
	if base == dn { // a base search for the next range
		if len(attrs) != 1 {
			return
		}
		if _, err := fmt.Sscanf(strings.ToLower(attrs[0]), "member;range=%d-*", &lo); err != nil {
			return
		}
	}
	hi := min(lo+s.step, len(s.members)) - 1
	name := fmt.Sprintf("member;range=%d-%d", lo, hi)
	if hi == len(s.members)-1 {
		name = fmt.Sprintf("member;range=%d-*", lo)
	}
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "entry")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "dn"))
	all := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attributes")
	attr := func(name string, vals ...string) {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attribute")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "values")
		for _, v := range vals {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "value"))
		}
		a.AppendChild(set)
		all.AppendChild(a)
	}
	if base != dn {
		attr("mail", "all-staff@corp.example.org")
	}
	attr(name, s.members[lo:hi+1]...)
	e.AppendChild(all)
	s.send(c, id, e)
}

func result(tag ber.Tag) *ber.Packet {
	r := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "result")
	r.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(ldap.LDAPResultSuccess), "code"))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnostic"))
	return r
}

func (s *adServer) send(c net.Conn, id int64, op *ber.Packet) {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "message")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "id"))
	p.AppendChild(op)
	_, _ = c.Write(p.Bytes())
}

// TestADRangedMembers: 3,200 members in ranges of 1,500 (one DN twice,
// in two ranges) count 3,200.
func TestADRangedMembers(t *testing.T) {
	members := make([]string, 3201)
	for i := range 3200 {
		members[i] = fmt.Sprintf("CN=User %d,OU=People,DC=corp,DC=example,DC=org", i)
	}
	members[3200] = members[7] // the same person again, in the last range
	cfg := LDAPDefaults()
	cfg.URL = startAD(t, members, 1500)
	cfg.BaseDN = "DC=corp,DC=example,DC=org"
	s, err := NewLDAP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sizes, _, err := s.Sizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sizes["all-staff@corp.example.org"] != 3200 || len(sizes) != 1 {
		t.Errorf("sizes = %v, want all-staff@corp.example.org: 3200", sizes)
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		attr   string
		lo, hi int
		ok     bool
	}{
		{"member;range=0-1499", "member", 0, 1499, true},
		{"Member;Range=1500-*", "member", 1500, -1, true},
		{"member", "", 0, 0, false},
		{"member;range=5-2", "", 0, 0, false},
		{"member;range=-1-5", "", 0, 0, false},
		{"member;range=x-*", "", 0, 0, false},
	} {
		attr, lo, hi, ok := parseRange(tc.in)
		if attr != tc.attr || lo != tc.lo || hi != tc.hi || ok != tc.ok {
			t.Errorf("parseRange(%q) = %q %d %d %v", tc.in, attr, lo, hi, ok)
		}
	}
}
