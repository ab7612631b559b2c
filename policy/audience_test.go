package policy

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestAudience(t *testing.T) {
	lists := map[string]int{
		"all-staff@example.org": 850000,
		"london@example.org":    2000,
		"empty@example.org":     0,
	}
	tests := []struct {
		name     string
		env, hdr []string
		audience int
		large    []string
	}{
		{"nothing", nil, nil, 0, nil},
		{"one person", []string{"<bob@example.org>"}, []string{"bob@example.org"}, 1, nil},
		{"before alias expansion: the list is one RCPT", []string{"<All-Staff@Example.org>"},
			[]string{"all-staff@example.org", "alice@example.org"}, 850001, []string{"all-staff@example.org"}},
		{"after expansion the envelope is larger", []string{"a@x", "b@x", "c@x", "d@x"}, []string{"small@example.org"}, 4, nil},
		{"header larger", []string{"a@x"}, []string{"a@x", "b@x", "london@example.org"}, 2002, []string{"london@example.org"}},
		{"distinct per side", []string{"a@x", "A@X", "<a@x>", " a@x "}, nil, 1, nil},
		{"lists from both sides, sorted", []string{"london@example.org"}, []string{"all-staff@example.org"}, 850000,
			[]string{"all-staff@example.org", "london@example.org"}},
		{"a registered list counts at least 1", []string{"empty@example.org"}, nil, 1, []string{"empty@example.org"}},
		{"empty addresses ignored", []string{"", "<>", " "}, nil, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, large := Audience(tt.env, tt.hdr, lists)
			if n != tt.audience || !slices.Equal(large, tt.large) {
				t.Errorf("Audience = %d, %q; want %d, %q", n, large, tt.audience, tt.large)
			}
		})
	}
	t.Run("saturates", func(t *testing.T) {
		huge := map[string]int{"a@x": math.MaxInt, "b@x": math.MaxInt}
		if n, _ := Audience([]string{"a@x", "b@x", "c@x"}, nil, huge); n != math.MaxInt {
			t.Errorf("Audience = %d, want MaxInt", n)
		}
	})
}

func ExampleAudience() {
	lists := map[string]int{"all-staff@example.org": 850000}
	env := []string{"<all-staff@example.org>"} // Postfix smtpd: before alias expansion
	hdr := ParseAddressList([]string{" Alice <alice@example.org>", " All Staff <All-Staff@example.org>"})
	fmt.Println(Audience(env, hdr, lists))
	// Output: 850001 [all-staff@example.org]
}

// TestConfigAudience: decisions count the envelope's audience, whatever
// lists the header names, unless the node sees split envelopes.
func TestConfigAudience(t *testing.T) {
	lists := map[string]int{"everyone@example.org": 600000, "students@example.org": 500000, "all-staff@example.org": 3000}
	forgedHdr := []string{"everyone@example.org", "students@example.org"}
	tests := []struct {
		name     string
		split    bool
		env, hdr []string
		audience int
		large    []string
	}{
		{"forged header lists reach nobody", false, []string{"victim@example.org"}, forgedHdr, 1,
			[]string{"everyone@example.org", "students@example.org"}},
		{"a list in the envelope counts its members", false, []string{"<All-Staff@example.org>", "boss@example.org"},
			[]string{"all-staff@example.org"}, 3001, []string{"all-staff@example.org"}},
		{"expanded envelope counts its recipients", false, []string{"a@x", "b@x", "c@x"}, []string{"all-staff@example.org"}, 3,
			[]string{"all-staff@example.org"}},
		{"split envelopes: the header counts", true, []string{"a@x"}, []string{"all-staff@example.org"}, 3000,
			[]string{"all-staff@example.org"}},
		{"split envelopes: the larger side", true, []string{"all-staff@example.org", "b@x"}, []string{"b@x"}, 3001,
			[]string{"all-staff@example.org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, large := Config{SplitEnvelopes: tt.split}.Audience(tt.env, tt.hdr, lists)
			if n != tt.audience || !slices.Equal(large, tt.large) {
				t.Errorf("Audience = %d, %q; want %d, %q", n, large, tt.audience, tt.large)
			}
		})
	}
}
