// Package sockio spends as few system calls as it can on the request path. It owns two things:
//
//   - the Cork, which puts off the writes made during a burst of work (a batch of datagrams read
//     from a NAS socket, a run of replies read from an upstream) to the burst's end, so that what
//     one burst produces leaves in one system call per socket, like TCP_CORK does for one socket;
//   - batched, non-blocking socket I/O on Linux (recvmmsg, sendmmsg, read and write) issued as raw
//     system calls, with the Go runtime's poller doing the waiting.
//
// On loopback and on a busy appliance a RADIUS proxy is dominated by system calls, not by its own
// code: see docs/performance.md for the measurements behind both.
package sockio

import "sync"

// A Task is work that must not delay the writes of the burst in which it arose (Cork.After).
type Task interface {
	// Run does the work. It is called once, by whichever goroutine ends the burst, after that
	// burst's writes were flushed.
	Run()
}

// A Flusher has writes put off by a Cork.
type Flusher interface {
	// Flush writes what was put off. It is called by whichever goroutine ends a burst.
	Flush()
}

// Cork puts off writes while a burst of work is under way. Bursts nest and overlap across
// goroutines; the end of each burst flushes everything put off so far, so no write waits longer
// than the burst in progress when it was made. The zero value is ready to use; a nil *Cork never
// puts anything off.
type Cork struct {
	mu         sync.Mutex
	depth      int
	dirty      []Flusher // what to flush at the next End
	spare      []Flusher // a flushed list kept for reuse
	after      []Task    // what to run at the next End, once dirty is flushed
	spareAfter []Task
}

// Begin starts a burst.
func (c *Cork) Begin() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.depth++
	c.mu.Unlock()
}

// End ends a burst, flushes every Flusher that put off a write since the last End, and then runs
// every Task put off since then (After).
func (c *Cork) End() {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.depth > 0 {
		c.depth--
	}
	dirty, after := c.dirty, c.after
	c.dirty, c.spare = c.spare, nil
	c.after, c.spareAfter = c.spareAfter, nil
	c.mu.Unlock()
	for i, f := range dirty {
		f.Flush()
		dirty[i] = nil
	}
	for i, t := range after {
		t.Run()
		after[i] = nil
	}
	c.mu.Lock()
	if c.spare == nil {
		c.spare = dirty[:0] // reused by a later End; a list is only ever held by one End
	}
	if c.spareAfter == nil {
		c.spareAfter = after[:0]
	}
	c.mu.Unlock()
}

// After puts t off to the end of the burst under way, after its writes have been flushed, so that
// work which only observes what was answered (learning, events, logging) does not hold the
// answers back. It reports false when no burst is under way: the caller runs t itself.
func (c *Cork) After(t Task) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.depth == 0 {
		return false
	}
	c.after = append(c.after, t)
	return true
}

// Defer reports whether a burst is under way, and if so records that f has a write to flush at
// its end. The caller must queue the write before it releases whatever lock its Flush takes, so
// that an End running concurrently cannot flush before the write is queued.
func (c *Cork) Defer(f Flusher) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.depth == 0 {
		return false
	}
	for _, d := range c.dirty {
		if d == f {
			return true
		}
	}
	c.dirty = append(c.dirty, f)
	return true
}
