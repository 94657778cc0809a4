package radsec

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"mxedge/proxy/sockio"
)

// maxPending bounds the bytes a connection holds for a socket that does not take them. A client
// connection has at most 256 requests outstanding, so it stays far below; a server connection's
// replies are bounded by the requests its peer sent.
const maxPending = 4 << 20

// streamWriter is the non-blocking write of a raw socket (sockio.Stream on Linux).
type streamWriter interface {
	WriteSome(p []byte) (int, error)
	WaitWrite(try func() bool) error
}

// batchConn sits under a tls.Conn so that several TLS records can leave in one TCP write, and so
// that no write ever blocks the goroutine that makes it. Each RADIUS packet is sealed in its own
// TLS record — FreeRADIUS 3.2 rejects a record carrying more than one packet ("Received bad
// packet: Length 750 contents 75"), although RFC 6614 treats TLS as a stream — yet a burst of
// packets still costs one system call.
//
// Once the handshake is done (the first batch), written bytes go to a pending buffer and are
// written without waiting; what the kernel does not take waits for the writer goroutine (run),
// which waits for the socket to drain and fails with ErrStalled when nothing moves for the stall
// bound. A connection without a raw descriptor (a test's net.Pipe) is written by that goroutine
// alone, with a write deadline.
//
// It also marks the bursts of the goroutine reading the connection for a sockio.Cork: a burst
// starts when bytes arrive and ends when the reader comes back for more, so everything written
// while handling what one read brought in leaves together.
type batchConn struct {
	net.Conn
	nb streamWriter // nil: no raw descriptor

	mu       sync.Mutex
	async    bool // handshake over: writes are queued and never block
	batching bool
	waiting  bool   // the writer goroutine owns the pending bytes until the socket drains
	buf      []byte // pending bytes are buf[off:]
	off      int
	written  uint64 // bytes the socket took: progress, for stall detection
	err      error
	kick     chan struct{}

	cork    *sockio.Cork // set by the reading goroutine, which alone uses cork and inBurst
	inBurst bool
}

func newBatchConn(nc net.Conn) *batchConn {
	c := &batchConn{Conn: nc, kick: make(chan struct{}, 1)}
	c.nb, _ = nc.(streamWriter)
	return c
}

func (c *batchConn) Read(p []byte) (int, error) {
	c.endBurst()
	n, err := c.Conn.Read(p)
	if n > 0 && c.cork != nil {
		c.cork.Begin()
		c.inBurst = true
	}
	return n, err
}

func (c *batchConn) endBurst() {
	if c.inBurst {
		c.inBurst = false
		c.cork.End()
	}
}

// corkReads makes the reads of a connection made by Client or Server mark bursts for cork; call
// it from the goroutine that reads, and the function it returns when that goroutine stops reading.
func corkReads(nc net.Conn, cork *sockio.Cork) (stop func()) {
	bc := batcherOf(nc)
	if bc == nil || cork == nil {
		return func() {}
	}
	bc.cork = cork
	return bc.endBurst
}

// Write queues p (after the handshake) and writes it at once unless a batch is open or the socket
// is already full.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.async {
		c.mu.Unlock()
		return c.Conn.Write(p) // the handshake, under its own deadline
	}
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	if n := len(c.buf) - c.off; n > maxPending {
		c.failLocked(fmt.Errorf("%w: %d bytes waiting for the socket", ErrStalled, n))
		return 0, c.err
	}
	if !c.batching {
		c.flushLocked()
	}
	return len(p), nil
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.async = true
	c.batching = true
	c.mu.Unlock()
}

// end closes the batch and writes what it accumulated.
func (c *batchConn) end() {
	c.mu.Lock()
	c.batching = false
	c.flushLocked()
	c.mu.Unlock()
}

// flushLocked writes pending bytes without waiting, unless the writer goroutine is waiting for the
// socket already; what is left is handed to it.
func (c *batchConn) flushLocked() {
	if c.waiting || c.err != nil || c.off == len(c.buf) {
		return
	}
	if c.nb != nil {
		c.writeSomeLocked()
		if c.err != nil || c.off == len(c.buf) {
			return
		}
	}
	c.waiting = true
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *batchConn) writeSomeLocked() {
	n, err := c.nb.WriteSome(c.buf[c.off:])
	c.advanceLocked(n)
	if err != nil {
		c.failLocked(fmt.Errorf("radsec: write: %w", err))
	}
}

func (c *batchConn) advanceLocked(n int) {
	c.off += n
	c.written += uint64(n)
	switch {
	case c.off == len(c.buf):
		c.buf, c.off = c.buf[:0], 0
	case c.off > 64<<10:
		// A fresh array: the writer goroutine may still be writing from the old one.
		c.buf, c.off = append([]byte(nil), c.buf[c.off:]...), 0
	}
}

func (c *batchConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// fail makes every later write fail with err and the writer goroutine return it.
func (c *batchConn) fail(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
}

// wake interrupts the writer goroutine's wait for the socket (to look at stop).
func (c *batchConn) wake() { c.Conn.SetWriteDeadline(time.Now()) }

// abort closes the socket under TLS without a close_notify, which on a dead link would wait for a
// send buffer that never drains; blocked reads and waits return at once.
func (c *batchConn) abort() {
	c.fail(net.ErrClosed)
	sockio.Abort(c.Conn)
}

// run is the writer goroutine: it drains what the socket did not take at once, until stop is closed
// (nil) or the socket fails or stalls (the error).
func (c *batchConn) run(stall time.Duration, stop <-chan struct{}) error {
	for {
		select {
		case <-c.kick:
		case <-stop:
			return nil
		}
		for {
			c.mu.Lock()
			if c.err != nil {
				err := c.err
				c.mu.Unlock()
				if errors.Is(err, net.ErrClosed) {
					return nil // aborted by its owner
				}
				return err
			}
			if c.off == len(c.buf) {
				c.waiting = false
				c.mu.Unlock()
				break
			}
			before := c.written
			var chunk []byte
			if c.nb == nil {
				chunk = c.buf[c.off:]
			}
			c.mu.Unlock()

			c.Conn.SetWriteDeadline(time.Now().Add(stall))
			var werr error
			if c.nb != nil {
				werr = c.nb.WaitWrite(func() bool {
					c.mu.Lock()
					defer c.mu.Unlock()
					if c.err == nil {
						c.writeSomeLocked()
					}
					return c.err != nil || c.written != before || c.off == len(c.buf)
				})
				c.mu.Lock()
			} else {
				var n int
				n, werr = c.Conn.Write(chunk)
				c.mu.Lock()
				c.advanceLocked(n)
			}
			progressed := c.written != before
			c.mu.Unlock()
			select {
			case <-stop:
				return nil
			default:
			}
			switch {
			case werr == nil:
			case errors.Is(werr, os.ErrDeadlineExceeded):
				if !progressed {
					err := fmt.Errorf("%w: nothing written for %v", ErrStalled, stall)
					c.fail(err)
					return err
				}
			default:
				err := fmt.Errorf("radsec: write: %w", werr)
				c.fail(err)
				return err
			}
		}
	}
}

// Client returns a TLS client connection over nc whose writes the radsec writer can batch.
func Client(nc net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Client(newBatchConn(sockio.NewStream(nc)), cfg)
}

// Server returns a TLS server connection over nc whose writes the radsec writer can batch.
func Server(nc net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Server(newBatchConn(sockio.NewStream(nc)), cfg)
}

// batcherOf finds the batchConn under a TLS connection made by Client or Server.
func batcherOf(nc net.Conn) *batchConn {
	if tc, ok := nc.(*tls.Conn); ok {
		if bc, ok := tc.NetConn().(*batchConn); ok {
			return bc
		}
	}
	return nil
}

// failed returns the error that failed the connection's writes, or nil.
func (c *batchConn) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
