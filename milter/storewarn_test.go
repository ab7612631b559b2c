package milter

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/store"
)

// TestStoreWarningsTellDataFromOutage: a key of the wrong type is an
// operator's mistake, not an outage. It is logged as a data error, and it
// is rate-limited apart from outages, so a running outage cannot hide it
// (or the other way round).
func TestStoreWarningsTellDataFromOutage(t *testing.T) {
	logs := &syncBuffer{}
	f, err := NewFilter(testConfig(), store.NewMemory(), nil, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	outage := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	data := fmt.Errorf("%w: stormguard:{0123456789abcdef}:replies: WRONGTYPE Operation against a key holding the wrong kind of value", store.ErrData)

	f.warnStore(outage, "accept")
	f.warnStore(data, "accept")
	f.warnStore(outage, "accept") // within 10 s of the first: quiet
	f.warnStore(data, "accept")   // likewise

	out := logs.String()
	if n := strings.Count(out, "store unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "store data error"); n != 1 {
		t.Errorf("data error logged %d times, want 1:\n%s", n, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "WRONGTYPE") && !strings.Contains(line, "store data error") {
			t.Errorf("WRONGTYPE logged as something else: %s", line)
		}
	}
}
