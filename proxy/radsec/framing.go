// Package radsec owns RADIUS over TLS (RFC 6614): delimiting packets on the TLS stream, the client
// connection that multiplexes many outstanding requests over one stream with a Status-Server
// watchdog (RFC 5997), and the server-side loop for peers that speak RadSec to mxedge.
//
// It does not dial, choose upstreams or know about NAS clients; the proxy package does that.
package radsec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// DefaultSecret is the shared secret RFC 6614 §2.3 prescribes for RADIUS over TLS.
const DefaultSecret = "radsec"

// ErrFrame is returned when the stream carries something that is not a RADIUS packet. RFC 6614 §2.1
// leaves no way to resynchronise, so the connection must be closed.
var ErrFrame = errors.New("radsec: invalid frame")

// ReadPacket reads one RADIUS packet from a TLS stream: packets are sent back to back, each delimited
// by its own length field (RFC 6614 §2.1). The packet is returned in a new slice owned by the caller.
func ReadPacket(r *bufio.Reader) (packet.Packet, error) {
	hdr, err := r.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) && r.Buffered() > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n, err := packet.FrameLen(hdr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	p, err := packet.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return p, nil
}

// frameWriter coalesces packets written by many goroutines. The first writer to find no write in
// progress writes itself — no hand-off to another goroutine, which costs a scheduler wake-up per
// packet — and whatever other goroutines append meanwhile leaves in its next round: one TLS record
// per packet (see batchConn) but one system call for the lot.
type frameWriter struct {
	nc       net.Conn
	cork     *sockio.Cork  // while it is in, writes wait for the end of the burst
	timeout  time.Duration // write deadline per flush; a blackholed peer that stops reading fails here
	mu       sync.Mutex
	buf      []byte
	spare    []byte
	flushing bool
	stopped  bool
	err      error
	failed   chan struct{} // closed when a write fails
	shutdown chan struct{}
	done     chan struct{}
}

func newFrameWriter(nc net.Conn, timeout time.Duration, cork *sockio.Cork) *frameWriter {
	return &frameWriter{
		nc:       nc,
		cork:     cork,
		timeout:  timeout,
		failed:   make(chan struct{}),
		shutdown: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// write queues p and, unless another goroutine is writing already or a burst is under way, writes
// it and everything queued behind it.
func (w *frameWriter) write(p []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = append(w.buf, p...)
	if w.flushing || w.stopped || w.cork.Defer(w) {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	w.mu.Unlock()
	w.drain()
	return nil
}

// Flush writes what was queued during a burst (sockio.Flusher).
func (w *frameWriter) Flush() {
	w.mu.Lock()
	if w.flushing || w.stopped || w.err != nil || len(w.buf) == 0 {
		w.mu.Unlock()
		return
	}
	w.flushing = true
	w.mu.Unlock()
	w.drain()
}

// drain writes until the buffer is empty; the caller set w.flushing.
func (w *frameWriter) drain() {
	for {
		if err := w.flush(); err != nil {
			w.mu.Lock()
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		if len(w.buf) == 0 || w.err != nil {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// run waits until stop is called (nil) or a write fails (the error, which also makes later writes
// fail).
func (w *frameWriter) run() error {
	defer close(w.done)
	select {
	case <-w.failed:
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.err
	case <-w.shutdown:
		// Best effort for what is still queued.
		w.mu.Lock()
		w.stopped = true
		busy := w.flushing
		w.flushing = true
		w.mu.Unlock()
		if !busy {
			w.flush()
		}
		return nil
	}
}

func (w *frameWriter) flush() error {
	w.mu.Lock()
	buf := w.buf
	w.buf = w.spare[:0]
	w.mu.Unlock()
	if len(buf) == 0 {
		w.spare = buf
		return nil
	}
	if w.timeout > 0 {
		w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	var err error
	if bc := batcherOf(w.nc); bc != nil {
		bc.begin()
		for off := 0; off < len(buf) && err == nil; {
			n, ferr := packet.FrameLen(buf[off:])
			if ferr != nil || off+n > len(buf) {
				n = len(buf) - off // cannot happen: only whole packets are queued
			}
			_, err = w.nc.Write(buf[off : off+n])
			off += n
		}
		if eerr := bc.end(); err == nil {
			err = eerr
		}
	} else {
		_, err = w.nc.Write(buf)
	}
	w.spare = buf[:0]
	if err != nil {
		w.mu.Lock()
		first := w.err == nil
		if first {
			w.err = fmt.Errorf("radsec: write: %w", err)
		}
		err = w.err
		w.mu.Unlock()
		if first {
			close(w.failed)
		}
		return err
	}
	return nil
}

func (w *frameWriter) stop() {
	select {
	case <-w.shutdown:
	default:
		close(w.shutdown)
	}
}
