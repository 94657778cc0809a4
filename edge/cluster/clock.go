package cluster

import (
	"sync"
	"time"
)

// DefaultMaxSkew is how far ahead of this edge's wall clock a peer's stamp may be and still be
// accepted: farther, and the record is refused (counted in Stats.SkewRefused) rather than let one
// edge with a wrong clock drag every edge's clock forward.
const DefaultMaxSkew = time.Minute

// Clock is a hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014) in
// nanoseconds: Now never goes backwards, is never behind the wall clock, and after Observe(t) is
// after t. The cluster stamps every replicated decision with it, so "the latest Access-Accept
// wins" orders decisions made on different edges by causality even when their wall clocks differ
// by less than MaxSkew. The cache is opened with Clock.Now as its Options.Now, so a stamp received
// from a peer is never "in the future" to it.
type Clock struct {
	wall    func() time.Time
	maxSkew time.Duration

	mu   sync.Mutex
	last int64 // Unix nanoseconds of the latest stamp issued or observed
}

// NewClock returns a clock over wall (nil: time.Now) that accepts stamps up to maxSkew ahead of it
// (0: DefaultMaxSkew).
func NewClock(wall func() time.Time, maxSkew time.Duration) *Clock {
	if wall == nil {
		wall = time.Now
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	return &Clock{wall: wall, maxSkew: maxSkew}
}

// Now returns a stamp later than every stamp issued or observed before, and not before the wall
// clock.
func (c *Clock) Now() time.Time {
	w := c.wall().UnixNano()
	c.mu.Lock()
	if w <= c.last {
		w = c.last + 1
	}
	c.last = w
	c.mu.Unlock()
	return time.Unix(0, w)
}

// Observe moves the clock past t, a stamp from a peer. It reports false, and leaves the clock
// alone, when t is more than the maximum skew ahead of the wall clock.
func (c *Clock) Observe(t time.Time) bool {
	n := t.UnixNano()
	if n > c.wall().Add(c.maxSkew).UnixNano() {
		return false
	}
	c.mu.Lock()
	if n > c.last {
		c.last = n
	}
	c.mu.Unlock()
	return true
}
