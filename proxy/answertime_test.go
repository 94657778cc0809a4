package proxy

import (
	"testing"
	"time"

	"mxedge/proxy/packet"
)

func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 101 * time.Microsecond, 3 * time.Millisecond, time.Minute} {
		h.Observe(d)
	}
	counts, sum := h.Counts()
	if len(counts) != len(AnswerTimeBounds)+1 {
		t.Fatalf("%d buckets", len(counts))
	}
	// A bound is inclusive (Prometheus's le): 100 µs falls in the first bucket.
	want := map[int]uint64{0: 2, 1: 1, 5: 1, len(AnswerTimeBounds): 1}
	for i, c := range counts {
		if c != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, c, want[i])
		}
	}
	if w := 50*time.Microsecond + 100*time.Microsecond + 101*time.Microsecond + 3*time.Millisecond + time.Minute; sum != w {
		t.Errorf("sum %v, want %v", sum, w)
	}
}

// TestObserveAnswerAllocs: the answer-time hook on the request path allocates nothing.
func TestObserveAnswerAllocs(t *testing.T) {
	var s Stats
	if n := testing.AllocsPerRun(1000, func() { s.observeAnswer(packet.CodeAccessRequest, 2*time.Millisecond) }); n != 0 {
		t.Fatalf("%v allocations per answer", n)
	}
	s.observeAnswer(packet.CodeAccountingRequest, time.Millisecond)
	if c, _ := s.AccountingAnswerTime.Counts(); c[3] != 1 {
		t.Fatalf("accounting answer not counted: %v", c)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for b.Loop() {
		h.Observe(3 * time.Millisecond)
	}
}
