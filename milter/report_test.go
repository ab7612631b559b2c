package milter

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stormguard/stormguard/policy"
	"github.com/stormguard/stormguard/store"
)

// TestDecisionNamesKindAndLists: what the history needs of a decision, the
// kind the store counted and the registered lists among the envelope
// recipients (never the header's, which anyone can forge), bounded.
func TestDecisionNamesKindAndLists(t *testing.T) {
	cfg := testConfig()
	cfg.Lists = map[string]int{listAddr: 3000, "managers@example.org": 2600}
	for i := range 2 * MaxLists {
		cfg.Lists[fmt.Sprintf("l%02d@example.org", i)] = 3000
	}
	f, err := NewFilter(cfg, store.NewMemory(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	orig := f.Decide(ctx, &Message{Sender: "boss@example.org",
		Rcpts:   []string{"<" + listAddr + ">", "boss@example.org", "managers@example.org", listAddr},
		Headers: policy.Headers{MessageID: "<o@example.org>", Subject: "Hello", To: []string{"forged@example.org"}}})
	if orig.Kind != policy.KindOriginal || !slices.Equal(orig.Lists, []string{listAddr, "managers@example.org"}) {
		t.Fatalf("original: kind %q lists %q", orig.Kind, orig.Lists)
	}
	var many []string
	for i := range 2 * MaxLists {
		many = append(many, fmt.Sprintf("l%02d@example.org", i))
	}
	reply := f.Decide(ctx, &Message{Sender: "a@example.org", Rcpts: many,
		Headers: policy.Headers{MessageID: "<r@example.org>", InReplyTo: "<o@example.org>", References: "<o@example.org>", Subject: "Re: Hello"}})
	if reply.Kind != policy.KindReply || !slices.Equal(reply.Lists, many[:MaxLists]) {
		t.Fatalf("reply: kind %q lists %q, want the first %d", reply.Kind, reply.Lists, MaxLists)
	}
	small := f.Decide(ctx, &Message{Sender: "a@example.org", Rcpts: []string{"b@example.org"},
		Headers: policy.Headers{MessageID: "<s@example.org>", Subject: "Hi"}})
	if small.Stored || small.Kind != "" || small.Lists != nil {
		t.Fatalf("small mail: %+v", small)
	}
}
