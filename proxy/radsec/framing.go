// Package radsec owns RADIUS over TLS (RFC 6614): delimiting packets on the TLS stream, the client
// connection that multiplexes many outstanding requests over one stream with a Status-Server
// watchdog (RFC 5997), and the server-side loop for peers that speak RadSec to mxedge; and
// RADIUS/1.1 (RFC 9765) on those connections: the ALPN versions (version.go), Token matching on
// the client connection (conn.go) and the translation of a server-side connection's requests into
// classic form (translate.go).
//
// It does not dial, choose upstreams or know about NAS clients; the proxy package does that.
package radsec

import (
	"bufio"
	"crypto/tls"
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
// progress seals what is queued itself — no hand-off to another goroutine, which costs a scheduler
// wake-up per packet — and whatever other goroutines append meanwhile leaves in its next round: one
// TLS record per packet but one system call for the lot (see batchConn). Nothing in it waits for
// the socket: bytes the kernel does not take wait in the batchConn for its writer goroutine (run).
type frameWriter struct {
	tc    net.Conn   // seals each packet into a TLS record written to out; nil: packets go to out as they are
	out   *batchConn // pending bytes and the non-blocking socket
	cork  *sockio.Cork
	stall time.Duration // no progress for this long fails the connection (ErrStalled)

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	flushing bool
	stopOnce sync.Once
	stopc    chan struct{}
}

func newFrameWriter(nc net.Conn, stall time.Duration, cork *sockio.Cork) *frameWriter {
	w := &frameWriter{cork: cork, stall: stall, stopc: make(chan struct{})}
	if bc := batcherOf(nc); bc != nil {
		w.tc, w.out = nc, bc
		// A client connection is handshaken already: from now on nothing may block, including
		// what crypto/tls writes on its own from the reading goroutine (a TLS 1.3 KeyUpdate). A
		// server connection handshakes in its first read and turns async at its first reply.
		if nc.(*tls.Conn).ConnectionState().HandshakeComplete {
			bc.mu.Lock()
			bc.async = true
			bc.mu.Unlock()
		}
	} else {
		w.out = newBatchConn(nc)
		w.out.async = true
	}
	return w
}

// write queues p and, unless another goroutine is writing already or a burst is under way, seals
// and writes it and everything queued behind it. It never waits for the socket.
func (w *frameWriter) write(p []byte) error {
	if err := w.out.failed(); err != nil {
		return err
	}
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	if w.flushing || w.cork.Defer(w) {
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
	if w.flushing || len(w.buf) == 0 {
		w.mu.Unlock()
		return
	}
	w.flushing = true
	w.mu.Unlock()
	w.drain()
}

// drain seals until nothing is queued; the caller set w.flushing.
func (w *frameWriter) drain() {
	for {
		w.mu.Lock()
		buf := w.buf
		if len(buf) == 0 {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.buf = w.spare[:0]
		w.mu.Unlock()
		err := w.seal(buf)
		w.spare = buf[:0]
		if err != nil {
			w.out.fail(err)
			w.mu.Lock()
			w.buf = w.buf[:0]
			w.flushing = false
			w.mu.Unlock()
			return
		}
	}
}

func (w *frameWriter) seal(buf []byte) error {
	if w.tc == nil {
		_, err := w.out.Write(buf)
		return err
	}
	w.out.begin()
	var err error
	for off := 0; off < len(buf) && err == nil; {
		n, ferr := packet.FrameLen(buf[off:])
		if ferr != nil || off+n > len(buf) {
			n = len(buf) - off // cannot happen: only whole packets are queued
		}
		_, err = w.tc.Write(buf[off : off+n])
		off += n
	}
	w.out.end()
	if err != nil {
		return fmt.Errorf("radsec: write: %w", err)
	}
	return nil
}

// run is the writer goroutine: it returns nil once stop is called, or the error that failed the
// socket (ErrStalled when pending bytes made no progress for the stall bound).
func (w *frameWriter) run() error { return w.out.run(w.stall, w.stopc) }

// stop ends run.
func (w *frameWriter) stop() {
	w.stopOnce.Do(func() {
		close(w.stopc)
		w.out.wake()
	})
}

// abort closes the socket at once (see batchConn.abort).
func (w *frameWriter) abort() { w.out.abort() }
