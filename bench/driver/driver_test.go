package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
)

// TestSmoke runs the load driver for a couple of seconds against every
// in-process target, closed loop and open loop, so the driver, the no-op baseline and the wiring
// cannot rot. It checks that every target answered every message and that
// stormguard stopped the storms; it asserts no speed (CI machines vary).
func TestSmoke(t *testing.T) {
	o := smokeOptions(options{targets: []string{"noop", "memory", "redis"}, threads: 2})
	o.redis = redisenv.Start(t)
	var out strings.Builder
	sums, err := run(context.Background(), o, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 6 {
		t.Fatalf("%d target phases reported, want 3 closed-loop and 3 open-loop", len(sums))
	}
	for i, s := range sums {
		if open := i >= 3; open != (s.rate > 0) {
			t.Errorf("%s: summary %d has rate %v", s.target, i, s.rate)
		}
		var n uint64
		for c := range s.classLat {
			n += s.classLat[c].n
			if s.classLat[c].n != s.classes[c] {
				t.Errorf("%s: class %s: %d latencies for %d messages", s.target, classNames[c], s.classLat[c].n, s.classes[c])
			}
		}
		if n != s.lat.n {
			t.Errorf("%s: %d latencies by class, %d overall", s.target, n, s.lat.n)
		}
		if s.rate > 0 && s.wait.n < s.lat.n {
			t.Errorf("%s at %v msg/s: %d waits recorded for %d messages", s.target, s.rate, s.wait.n, s.lat.n)
		}
		if s.errs != 0 {
			t.Errorf("%s: %d failed messages", s.target, s.errs)
		}
		if s.lat.n == 0 || s.median <= 0 {
			t.Errorf("%s: no messages measured", s.target)
		}
		if s.classes[classSmallNew] == 0 {
			t.Errorf("%s: the mix sent no small mail: %v", s.target, s.classes)
		}
		switch s.target {
		case "noop":
			if s.verdicts["accept"] != s.lat.n {
				t.Errorf("noop: verdicts %v, want only accepts", s.verdicts)
			}
		default:
			// Two threads take every large reply: more than 10 each
			// (max_replies) in a run, so both are stopped.
			if large := s.classes[classLargeRefs] + s.classes[classLargeNoRefs]; large > 30 && s.verdicts["reject"] == 0 {
				t.Errorf("%s: %d large-audience replies to 2 threads and no refusal: %v", s.target, large, s.verdicts)
			}
			if s.verdicts["tempfail"] != 0 {
				t.Errorf("%s: tempfails %d (the store failed?)", s.target, s.verdicts["tempfail"])
			}
		}
	}
}

// TestHist checks the log-linear buckets: exact below 2 ms, within 0.1 %
// above, quantiles never beyond the maximum.
func TestHist(t *testing.T) {
	for _, us := range []uint64{0, 1, 2047, 2048, 2049, 4095, 4096, 100000, 250000, 9999999} {
		i := bucketOf(us)
		if up := upper(i); up <= us || float64(up-us) > max(1, float64(us)/1000) {
			t.Errorf("%d µs: bucket %d upper edge %d", us, i, up)
		}
		if i > 0 && upper(i-1) > us {
			t.Errorf("%d µs: bucket %d, previous bucket ends at %d", us, i, upper(i-1))
		}
	}
	h := newHist()
	for i := range 1000 {
		h.add(time.Duration(i+1) * time.Millisecond / 10)
	}
	h.add(20 * time.Second)
	if q := h.quantile(0.5); q < 49*time.Millisecond || q > 51*time.Millisecond {
		t.Errorf("p50 %v", q)
	}
	if q := h.quantile(1); q != 20*time.Second {
		t.Errorf("max quantile %v, want 20s", q)
	}
}
