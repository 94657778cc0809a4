package notify

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Heartbeat.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestHeartbeat(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := NewHeartbeat(clock.now)
	alive := h.Alive(5 * time.Second)
	steps := []struct {
		advance time.Duration
		beat    bool
		want    bool
	}{
		{0, false, true},               // a fresh heartbeat counts as a beat
		{5 * time.Second, false, true}, // exactly within
		{time.Millisecond, false, false},
		{0, true, true}, // recovers on the next beat
		{4 * time.Second, true, true},
		{6 * time.Second, false, false},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		if s.beat {
			h.Beat()
		}
		if got := alive(); got != s.want {
			t.Errorf("step %d: alive() = %v (age %v), want %v", i, got, h.Age(), s.want)
		}
	}
}

func TestHeartbeatConcurrent(t *testing.T) {
	h := NewHeartbeat(nil)
	alive := h.Alive(time.Minute)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				h.Beat()
				if !alive() {
					t.Error("alive() = false right after a beat")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkHeartbeatBeat(b *testing.B) {
	h := NewHeartbeat(nil)
	b.ReportAllocs()
	for b.Loop() {
		h.Beat()
	}
}
