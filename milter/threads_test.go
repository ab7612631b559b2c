package milter

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// threadIndex builds an Outlook Thread-Index: 0x01, 5 bytes of time, the
// 16-byte conversation GUID, then 5 bytes per reply.
func threadIndex(guid byte, replies int) string {
	b := []byte{0x01, 0xd9, 0x1a, 0x2b, 0x3c, 0x4d}
	for i := 0; i < 16; i++ {
		b = append(b, guid+byte(i))
	}
	for i := 0; i < replies; i++ {
		b = append(b, 0x00, 0x00, 0x12, 0x34, byte(i))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestMixedClientsCountInOneThread: in a real storm Outlook, Thunderbird,
// phones and webmail reply side by side; every reply must land in the
// original's thread, through the links the store keeps, whatever headers
// its client kept.
func TestMixedClientsCountInOneThread(t *testing.T) {
	cfg := testConfig()
	cfg.Policy.Limits.MaxReplies = 100
	f, err := NewFilter(cfg, store.NewMemory(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := func(sender string, h policy.Headers) *Message {
		h.To = []string{"All staff <" + listAddr + ">"}
		return &Message{Sender: sender, Rcpts: []string{listAddr}, Headers: h}
	}
	orig := f.Decide(ctx, msg("boss@example.org", policy.Headers{
		MessageID: "<AM0PR01MB1234.orig@eurprd01.prod.outlook.com>", ThreadIndex: threadIndex(0x40, 0),
		Subject: "Budget 2027",
	}))
	if orig.Rule != policy.RuleOriginal {
		t.Fatalf("original: %+v", orig)
	}
	want := orig.Thread
	steps := []struct {
		name   string
		sender string
		h      policy.Headers
		source policy.Source
	}{
		{"Thunderbird (References)", "a@example.org", policy.Headers{
			MessageID: "<tb-1@example.org>", InReplyTo: "<AM0PR01MB1234.orig@eurprd01.prod.outlook.com>",
			References: "<AM0PR01MB1234.orig@eurprd01.prod.outlook.com>", Subject: "Re: Budget 2027"}, policy.SourceAncestor},
		{"Outlook (Thread-Index only)", "b@example.org", policy.Headers{
			MessageID: "<AM0PR01MB5678.r1@eurprd01.prod.outlook.com>", ThreadIndex: threadIndex(0x40, 1),
			Subject: "RE: Budget 2027"}, policy.Source("thread-index")},
		{"phone replying to the Thunderbird reply (In-Reply-To only)", "c@example.org", policy.Headers{
			MessageID: "<phone-1@example.org>", InReplyTo: "<tb-1@example.org>", Subject: "Re: Budget 2027"}, policy.SourceAncestor},
		{"client that keeps only the subject (German)", "d@example.org", policy.Headers{
			MessageID: "<web-1@example.org>", Subject: "AW: Budget 2027"}, policy.Source("subject")},
		{"reply to the subject-only reply (In-Reply-To only)", "e@example.org", policy.Headers{
			MessageID: "<phone-2@example.org>", InReplyTo: "<web-1@example.org>", Subject: "Sv: Budget 2027"}, policy.SourceAncestor},
	}
	for i, s := range steps {
		d := f.Decide(ctx, msg(s.sender, s.h))
		if d.Thread != want || d.Rule != policy.RuleCounted || d.Count != i+1 {
			t.Fatalf("%s: thread %s rule %s count %d, want thread %s counted as reply %d", s.name, d.Thread, d.Rule, d.Count, want, i+1)
		}
		if d.Source != s.source {
			t.Errorf("%s: found through %q, want %q", s.name, d.Source, s.source)
		}
	}
}
