package notify

import (
	"sync/atomic"
	"time"
)

// Heartbeat records when the serving loop last made progress, for the alive func RunWatchdog polls.
// The loop calls Beat on every iteration (including idle wake-ups: a read deadline that expires
// is progress, a loop stuck on a lock is not). Safe for concurrent use; Beat does not allocate.
type Heartbeat struct {
	now  func() time.Time
	base time.Time
	// last is the offset from base of the latest beat. Offsets from a time.Time taken with the
	// monotonic clock ignore wall-clock steps (NTP, an operator's date -s).
	last atomic.Int64
}

// NewHeartbeat returns a Heartbeat whose first beat is now. now is time.Now when nil (tests inject
// a fake clock).
func NewHeartbeat(now func() time.Time) *Heartbeat {
	if now == nil {
		now = time.Now
	}
	return &Heartbeat{now: now, base: now()}
}

// Beat records progress.
func (h *Heartbeat) Beat() { h.last.Store(int64(h.now().Sub(h.base))) }

// Age returns how long ago the last beat was.
func (h *Heartbeat) Age() time.Duration {
	return h.now().Sub(h.base) - time.Duration(h.last.Load())
}

// Alive returns a func reporting whether the last beat is no older than within: the argument for
// RunWatchdog. Choose within well below the watchdog timeout minus one ping interval, so a stall is
// caught before systemd's deadline, and above the loop's longest idle wake-up interval.
func (h *Heartbeat) Alive(within time.Duration) func() bool {
	return func() bool { return h.Age() <= within }
}
