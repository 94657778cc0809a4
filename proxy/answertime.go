package proxy

import (
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
)

// AnswerTimeBounds are the upper bounds of the answer-time histograms' buckets: a local MAB answer
// takes tens of microseconds, a proxied one a WAN round trip, EAP-TLS and spooled accounting
// (an fsync) milliseconds; the request budget ends the scale.
var AnswerTimeBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Histogram counts durations into AnswerTimeBounds' buckets with atomics: Observe takes no lock
// and allocates nothing, so the request path can call it for every answer.
type Histogram struct {
	counts [len(AnswerTimeBounds) + 1]atomic.Uint64 // the last: above every bound
	sum    atomic.Int64                             // nanoseconds
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(AnswerTimeBounds) && d > AnswerTimeBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Counts returns the observations per bucket (not cumulative; the last above every bound) and
// their sum. A scrape racing Observe may see a count without its sum or the other way round.
func (h *Histogram) Counts() ([]uint64, time.Duration) {
	out := make([]uint64, len(h.counts))
	for i := range h.counts {
		out[i] = h.counts[i].Load()
	}
	return out, time.Duration(h.sum.Load())
}

// observeAnswer counts the time from receiving a request to handing its answer to the transport.
func (s *Stats) observeAnswer(code packet.Code, d time.Duration) {
	if code == packet.CodeAccountingRequest {
		s.AccountingAnswerTime.Observe(d)
		return
	}
	s.AccessAnswerTime.Observe(d)
}
