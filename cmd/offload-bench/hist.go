package main

import (
	"math"
	"math/bits"
	"time"
)

// The latency histogram is log-linear (HDR-like): values below 2·subCount ns
// get one bucket each; above that every power of two is split into subCount
// equal buckets, so a bucket is at most 1/subCount (1.6%) of its value wide.
// It is fixed-size and allocation-free to record, so a worker can record
// every request without a growing slice, and histograms merge by addition.
const (
	subBits  = 6
	subCount = 1 << subBits
	// maxShift caps the range at about 2^(subBits+1+maxShift) ns ≈ 275 s;
	// longer latencies land in the last bucket (max is kept exactly anyway).
	maxShift   = 31
	numBuckets = (maxShift + 2) * subCount
)

type histogram struct {
	counts [numBuckets]uint32
	n      uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	if shift > maxShift {
		return numBuckets - 1
	}
	return (shift+1)*subCount + int((v>>shift)&(subCount-1))
}

// bucketMid is the midpoint of bucket i, the value reported for it.
func bucketMid(i int) time.Duration {
	if i < 2*subCount {
		return time.Duration(i)
	}
	shift := i/subCount - 1
	low := uint64(subCount+i%subCount) << shift
	return time.Duration(low + (uint64(1)<<shift)/2)
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency at or below which a fraction q of the
// recorded requests fall (nearest rank), never more than the exact max.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	if rank == h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return min(bucketMid(i), h.max)
		}
	}
	return h.max
}
