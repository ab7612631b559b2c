package store

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/policy"
)

// recordLuaParts splits record.lua into its contract header (the opening
// comment) and its code.
func recordLuaParts(t *testing.T) (header, code string) {
	t.Helper()
	header, code, ok := strings.Cut(recordLua, "]]")
	if !ok || !strings.HasPrefix(header, "--[[") {
		t.Fatal("record.lua does not open with its --[[ contract ]] comment")
	}
	return header, code
}

// wantArgs are record.lua's ARGV names in the order the Go caller passes
// them: recordArgNames, then the limits in policy.LimitRules order.
func wantArgs() []string {
	names := slices.Clone(recordArgNames[:])
	for _, lr := range policy.LimitRules {
		names = append(names, lr.Key)
	}
	return names
}

// numbered reads "NAME[n]  word" lines of a contract header in order,
// checking that n counts up from 1.
func numbered(t *testing.T, header, name, word string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + name + `\[(\d+)\]\s+` + word)
	var out []string
	for _, m := range re.FindAllStringSubmatch(header, -1) {
		if n, _ := strconv.Atoi(m[1]); n != len(out)+1 {
			t.Fatalf("record.lua header: %s[%s] where %s[%d] was due", name, m[1], name, len(out)+1)
		}
		out = append(out, m[2])
	}
	return out
}

// TestRecordScriptContract: the KEYS and ARGV record.lua's header
// declares, and the ARGV its code reads, are the ones store/redis.go
// passes, by name and in order; and the code returns every limit rule.
func TestRecordScriptContract(t *testing.T) {
	header, code := recordLuaParts(t)

	if got := numbered(t, header, "KEYS", `\{T\}:(\w+)`); !slices.Equal(got, threadKeyNames[:]) {
		t.Errorf("record.lua KEYS = %q, Keys.Thread passes %q", got, threadKeyNames)
	}
	want := wantArgs()
	if got := numbered(t, header, "ARGV", `(\w+)`); !slices.Equal(got, want) {
		t.Errorf("record.lua header ARGV = %q,\nstore/redis.go passes %q", got, want)
	}

	// The code reads each ARGV once, into a local named as the header
	// names it, and reads nothing else of ARGV.
	read := map[int]string{}
	readRe := regexp.MustCompile(`^local (\w+)\s*=\s*(?:tonumber\()?ARGV\[(\d+)\]\)?$`)
	for i, line := range strings.Split(code, "\n") {
		if !strings.Contains(line, "ARGV") {
			continue
		}
		m := readRe.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			t.Errorf("record.lua code line %d reads ARGV outside the block of locals: %q", i+1, line)
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if _, dup := read[n]; dup {
			t.Errorf("record.lua reads ARGV[%d] twice", n)
		}
		read[n] = m[1]
	}
	for n, name := range read {
		if n < 1 || n > len(want) {
			t.Errorf("record.lua reads ARGV[%d] (local %s); the caller passes %d", n, name, len(want))
		} else if name != want[n-1] {
			t.Errorf("record.lua reads ARGV[%d] into %q; the caller passes %q there", n, name, want[n-1])
		}
	}
	if len(read) != len(want) {
		t.Errorf("record.lua reads %d of the %d ARGV the caller passes", len(read), len(want))
	}
	for _, n := range regexp.MustCompile(`KEYS\[(\d+)\]`).FindAllStringSubmatch(code, -1) {
		if i, _ := strconv.Atoi(n[1]); i < 1 || i > len(threadKeyNames) {
			t.Errorf("record.lua uses KEYS[%d]; the caller passes %d", i, len(threadKeyNames))
		}
	}

	// Each limit rule is one the script can cross (its twin of
	// policy.Crossed; storetest's LimitTable checks the answers).
	for _, lr := range policy.LimitRules {
		if !strings.Contains(code, "rule = '"+string(lr.Rule)+"'") {
			t.Errorf("record.lua never crosses %q (policy.LimitRules)", lr.Rule)
		}
	}
}

// TestRecordArgs: the Go caller puts each value under the name the
// script reads it by.
func TestRecordArgs(t *testing.T) {
	r := Record{
		Thread: "0123456789abcdef", Message: "fedcba9876543210fedcba9876543210", Kind: policy.KindReply,
		Audience: 4321, Sender: "a@example.org", Subject: "Re: x", Now: time.UnixMilli(1_700_000_000_123),
		Limits:    policy.Limits{MaxReplies: 7, DeliveryBudget: 98765, Window: time.Hour, BlockFor: 2 * time.Hour},
		Retention: 24 * time.Hour,
	}
	args := recordArgs(r)
	names := wantArgs()
	if len(args) != len(names) {
		t.Fatalf("recordArgs: %d values for %d names", len(args), len(names))
	}
	got := map[string]any{}
	for i, n := range names {
		got[n] = args[i]
	}
	want := map[string]any{
		"kind": "reply", "now": "1700000000123", "msg": string(r.Message),
		"member": string(r.Message) + ":" + policy.SenderPrint("a@example.org") + ":4321", "audience": "4321",
		"sender": "a@example.org", "subject": "Re: x",
		"window": "3600000", "block_for": "7200000", "retention": "86400000",
		"max_duplicates": strconv.Itoa(policy.MaxDuplicates), "max_senders": strconv.Itoa(MaxSenders),
		"max_replies": "7", "delivery_budget": "98765",
	}
	if !maps.Equal(got, want) {
		t.Errorf("recordArgs by name = %v,\nwant %v", got, want)
	}
}
