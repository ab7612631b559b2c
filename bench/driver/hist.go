package main

import (
	"math/bits"
	"time"
)

// hist counts latencies in log-linear buckets: 1 µs wide up to 2 ms, then
// 1024 buckets per power of two (under 0.1 % relative error) up to
// histMax; longer ones land in the last bucket (and max keeps the true
// maximum). Fixed and small (about 130 KiB), so a run of millions of
// messages does not grow the driver and every worker can keep one per
// message class.
type hist struct {
	buckets []uint64
	n       uint64
	sum     time.Duration
	max     time.Duration
}

const (
	histMax    = 10 * time.Second
	histLinear = 2048 // µs counted one by one
	histSub    = 1024 // buckets per power of two above histLinear
)

var histBuckets = bucketOf(uint64(histMax/time.Microsecond)) + 1

func newHist() *hist { return &hist{buckets: make([]uint64, histBuckets)} }

// bucketOf maps a latency in µs to its bucket.
func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 11 // us>>shift in [1024, 2048)
	return histLinear + (shift-1)*histSub + int(us>>shift) - histSub
}

// upper returns the upper edge of bucket i, in µs.
func upper(i int) uint64 {
	if i < histLinear {
		return uint64(i) + 1
	}
	shift := (i-histLinear)/histSub + 1
	sub := uint64((i-histLinear)%histSub + histSub)
	return (sub + 1) << shift
}

func (h *hist) add(d time.Duration) {
	i := bucketOf(uint64(max(d, 0) / time.Microsecond))
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.buckets {
		h.buckets[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the upper edge of the bucket holding quantile q (0..1),
// never more than the maximum seen.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if seen >= rank {
			if i == len(h.buckets)-1 {
				return h.max
			}
			return min(time.Duration(upper(i))*time.Microsecond, h.max)
		}
	}
	return h.max
}
