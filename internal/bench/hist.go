package bench

import (
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets: exact below 128 ns,
// then 64 buckets per power of two, so a quantile is within 0.8% of the
// true value. The zero value is ready to use; it is not safe for concurrent
// use (each load worker has its own and they are merged).
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits       // buckets per power of two
	histExact   = 2 * histSub            // values below this have their own bucket
	histBuckets = histExact + 57*histSub // up to 2^63 ns
)

// bucket returns the bucket index of v ≥ 0 nanoseconds.
func bucket(v uint64) int {
	if v < histExact {
		return int(v)
	}
	e := bits.Len64(v) - (histSubBits + 1) // shift that leaves the top 7 bits
	m := v >> e                            // in [64, 128)
	return histExact + (e-1)*histSub + int(m-histSub)
}

// bucketValue returns the middle of bucket i, in nanoseconds.
func bucketValue(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	i -= histExact
	e := i/histSub + 1
	m := uint64(i%histSub + histSub)
	return m<<e + (1<<e)/2
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of records.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is the average latency (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Max is the largest latency recorded.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the q-quantile (0 < q ≤ 1): the smallest recorded value's
// bucket below which at least q of the records fall, clamped to the exact
// minimum and maximum. 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++ // ceil
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketValue(i))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
