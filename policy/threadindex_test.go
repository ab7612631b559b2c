package policy

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// makeThreadIndex builds an Outlook Thread-Index: 0x01, 5 bytes of time, the
// 16-byte GUID, and one 5-byte child block per reply.
func makeThreadIndex(guid string, children int) string {
	g, err := hex.DecodeString(guid)
	if err != nil || len(g) != 16 {
		panic("bad guid " + guid)
	}
	b := []byte{0x01, 0xd3, 0x4a, 0x5f, 0x00, 0x11}
	b = append(b, g...)
	for i := range children {
		b = append(b, 0x00, 0x01, 0x02, 0x03, byte(i))
	}
	return base64.StdEncoding.EncodeToString(b)
}

const testGUID = "8f1c5e2a7b3d4c6e9a0b1c2d3e4f5a6b"

func TestThreadIndexGUID(t *testing.T) {
	root := makeThreadIndex(testGUID, 0)
	reply := makeThreadIndex(testGUID, 1)
	deep := makeThreadIndex(testGUID, 7)
	tests := []struct {
		name     string
		in       string
		want     string
		ok       bool
		children int
	}{
		{"new conversation (22 bytes)", root, testGUID, true, 0},
		{"reply (27 bytes)", reply, testGUID, true, 1},
		{"deep reply", deep, testGUID, true, 7},
		{"leading space and folding", " " + deep[:20] + "\r\n " + deep[20:], testGUID, true, 7},
		{"missing padding", strings.TrimRight(root, "="), testGUID, true, 0},
		{"truncated tail", deep[:len(deep)-3], testGUID, true, 6},
		{"garbage after padding", root + "!!!", testGUID, true, 0},
		{"exchange online style", "AQHZ" + makeThreadIndex(testGUID, 2)[4:], testGUID, true, 2},
		{"too short", root[:28], "", false, 0},
		{"truncated to 21 bytes", base64.StdEncoding.EncodeToString(mustB64(root)[:21]), "", false, 0},
		{"not base64", "Thread-Index: hello world, this is not it", "", false, 0},
		{"wrong first byte", base64.StdEncoding.EncodeToString(append([]byte{0x02}, mustB64(root)[1:]...)), "", false, 0},
		{"all-zero GUID", makeThreadIndex(strings.Repeat("00", 16), 1), "", false, 0},
		{"empty", "", "", false, 0},
		{"url-safe alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(makeThreadIndex("fbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfc", 0)), "", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ThreadIndexGUID(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ThreadIndexGUID(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
			if _, n, _ := parseThreadIndex(tt.in); ok && n != tt.children {
				t.Errorf("children = %d, want %d", n, tt.children)
			}
		})
	}
}

func mustB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzThreadIndexGUID(f *testing.F) {
	for _, s := range []string{
		makeThreadIndex(testGUID, 0), makeThreadIndex(testGUID, 3), "AQHZ", "Ac", "=====",
		makeThreadIndex(testGUID, 1)[:29], "\x00\xff" + makeThreadIndex(testGUID, 1),
		strings.Repeat("A", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		guid, children, ok := parseThreadIndex(v)
		if !ok {
			if guid != "" {
				t.Fatalf("not ok but guid %q", guid)
			}
			return
		}
		if len(guid) != 32 || strings.ToLower(guid) != guid {
			t.Fatalf("guid %q is not 32 lowercase hex", guid)
		}
		if _, err := hex.DecodeString(guid); err != nil {
			t.Fatalf("guid %q: %v", guid, err)
		}
		if children < 0 || children > 4096 {
			t.Fatalf("children = %d", children)
		}
		if k := makeKey(kindThreadIndex, guid); !isKey(k) {
			t.Fatalf("key %q", k)
		}
	})
}

func ExampleThreadIndexGUID() {
	// The first 22 bytes are the same in every message of one Outlook
	// conversation; a reply appends 5 bytes.
	fmt.Println(ThreadIndexGUID("AdNKXwARjxxeKns9TG6aCxwtPk9aawABAgMA"))
	// Output: 8f1c5e2a7b3d4c6e9a0b1c2d3e4f5a6b true
}
