package radsec

import (
	"crypto/tls"
	"net"
	"sync"

	"mxedge/proxy/sockio"
)

// batchConn sits under a tls.Conn so that several TLS records can leave in one TCP write. Each
// RADIUS packet is sealed in its own TLS record — FreeRADIUS 3.2 rejects a record carrying more
// than one packet ("Received bad packet: Length 750 contents 75"), although RFC 6614 treats TLS as
// a stream — yet a burst of packets still costs one system call.
//
// It also marks the bursts of the goroutine reading the connection for a sockio.Cork: a burst
// starts when bytes arrive and ends when the reader comes back for more, so everything written
// while handling what one read brought in leaves together.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte

	cork    *sockio.Cork // set by the reading goroutine, which alone uses cork and inBurst
	inBurst bool
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

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.batching {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// end writes what the batch accumulated.
func (c *batchConn) end() error {
	c.mu.Lock()
	buf := c.buf
	c.buf = c.buf[:0]
	c.batching = false
	c.mu.Unlock()
	if len(buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(buf)
	return err
}

// Client returns a TLS client connection over nc whose writes the radsec writer can batch.
func Client(nc net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Client(&batchConn{Conn: sockio.NewStream(nc)}, cfg)
}

// Server returns a TLS server connection over nc whose writes the radsec writer can batch.
func Server(nc net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Server(&batchConn{Conn: sockio.NewStream(nc)}, cfg)
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
