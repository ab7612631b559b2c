package admin

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestCheckPoster(t *testing.T) {
	for _, ok := range []string{"comms@example.org", "@hr.example.org", "jdoe", " JDoe ", "jdoe@example.org", "user+tag@sub.example.org"} {
		if err := CheckPoster(ok); err != nil {
			t.Errorf("CheckPoster(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", " ", "a b", "a\tb", "x\r\ny", "x\x1by", "x\u0085y", "x\u202ey", "x\u00a0y", "x\xffy", "<a@example.org>", "a,b", "a;b", `"a"@b.org`,
		"a@b@c.org", "@", "a@", "a@.org", "a@example.org.", strings.Repeat("a", 255)} {
		err := CheckPoster(bad)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
			t.Errorf("CheckPoster(%q) = %v, want a 400 Error", bad, err)
		}
	}
}
