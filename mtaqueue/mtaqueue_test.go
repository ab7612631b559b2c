package mtaqueue

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"4F2A81C0B3":              true, // Postfix short id
		"4Yq2Nw3hJzz9cLm":         true, // Postfix long id
		"5B1EaT3v012345":          true, // Sendmail 8.12+
		"ALL":                     false,
		"all":                     false,
		"":                        false,
		"ABCDE":                   false,
		"4F2A81C0B3*":             false, // postqueue -p marks active ids so
		"4F2A81C0B3!":             false,
		"-d":                      false,
		"4F2A81C0B3\nALL":         false,
		"4F2A81C0B3 5B1EaT3v0123": false,
		"../../etc/passwd":        false,
		"4F2A;rm -rf /":           false,
		"\x1b[31m4F2A81C0B3":      false,
		"４F2A81C0B3":              false, // a fullwidth digit
		strings.Repeat("A", 41):   false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestParsePostqueue(t *testing.T) {
	out := `{"queue_name": "deferred", "queue_id": "4F2A81C0B3", "arrival_time": 1764590000, "message_size": 512, "forced_expire": false, "sender": "a@example.org", "recipients": [{"address": "b@example.org", "delay_reason": "deferred transport"}]}
{"queue_name": "hold", "queue_id": "5C1B92D1A4", "arrival_time": 1764590001, "message_size": 600, "forced_expire": false, "sender": "", "recipients": []}
`
	ms, err := parsePostqueue(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Message{{ID: "4F2A81C0B3", Queue: "deferred"}, {ID: "5C1B92D1A4", Queue: "hold", Held: true}}
	if len(ms) != len(want) || ms[0] != want[0] || ms[1] != want[1] {
		t.Fatalf("got %+v, want %+v", ms, want)
	}
	if ms, err := parsePostqueue(strings.NewReader("")); err != nil || len(ms) != 0 {
		t.Errorf("empty queue: %v, %v", ms, err)
	}
	if _, err := parsePostqueue(strings.NewReader(`{"queue_name": "deferred"}`)); err == nil {
		t.Error("a message without an id: no error")
	}
	if _, err := parsePostqueue(strings.NewReader(`Mail queue is empty`)); err == nil {
		t.Error("not JSON: no error")
	}
}

func TestSendmailReason(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "held by stormguard",
		"stormguard: thread 1a2b storming": "stormguard: thread 1a2b storming",
		"a\nH?x?Bcc: evil\r\n":             "a H?x?Bcc: evil",
		"\x1b[2J naïve":                    "[2J na ve",
		strings.Repeat("x", 300):           strings.Repeat("x", 200),
	} {
		if got := (&Sendmail{Reason: in}).reason(); got != want {
			t.Errorf("reason(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkAmbiguous(t *testing.T) {
	queue := []Message{{ID: "5B1EaT3v012345"}, {ID: "5B1EaT3v0123"}, {ID: "6C2FbU4w067890"}}
	res := []Result{{ID: "5B1EaT3v0123"}, {ID: "6C2FbU4w067890"}}
	keep := markAmbiguous(res, []string{"5B1EaT3v0123", "6C2FbU4w067890"}, queue)
	if len(keep) != 1 || keep[0] != "6C2FbU4w067890" {
		t.Errorf("kept %v", keep)
	}
	if res[0].Outcome != Ambiguous || res[1].Outcome != "" {
		t.Errorf("results %+v", res)
	}
}
