package text

import (
	"errors"
	"fmt"
	"testing"
)

func TestOneLine(t *testing.T) {
	err := fmt.Errorf("read config:\n  line 3: %w", errors.New("bad\t value\nagain"))
	if got, want := OneLine(err), "read config:; line 3: bad value; again"; got != want {
		t.Errorf("OneLine = %q, want %q", got, want)
	}
}

func TestClean(t *testing.T) {
	in := "a\r\nb\x1b[31mc\u009b2Jd\u202ee\x7ff\xffg\u200bh"
	if got := Clean(in, 0); got != "a  b [31mc 2Jd e f g h" {
		t.Errorf("Clean(%q) = %q", in, got)
	}
	if got := Clean("abcdef", 4); got != "abc…" {
		t.Errorf("cut: %q", got)
	}
	if got := Clean("abcd", 4); got != "abcd" {
		t.Errorf("at the limit: %q", got)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain ü 回复":       "plain ü 回复",
		"a\r\nb\tc\x1b[2J": `a\r\nb\tc\x1b[2J`,
		"\u202eevil\x00":   `\u202eevil\x00`,
		"\x7f\u2028":       `\x7f\u2028`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func ExampleClean() {
	fmt.Println(Clean("Re: lunch\r\n\u202etxt.exe", 0))
	fmt.Println(Clean("a subject far too long for its column", 12))
	// Output:
	// Re: lunch   txt.exe
	// a subject f…
}

func ExamplePrintable() {
	fmt.Println(Printable("Re: lunch\r\n\u202etxt.exe"))
	// Output:
	// Re: lunch\r\n\u202etxt.exe
}
