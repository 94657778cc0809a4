package radsec

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// ReplyFunc queues a response on the stream a request came from. It never blocks on the network:
// the connection's own writer goroutine writes it. resp may be reused once it returns.
type ReplyFunc func(resp []byte) error

// ErrNotReading is returned by a ReplyFunc whose peer has stopped reading (more than maxQueued
// bytes of responses wait), and wraps what ServeConn returns when it closed a connection for that
// reason, the queue or a write that failed. The connection is then closed.
var ErrNotReading = errors.New("radsec: peer not reading its responses")

// maxQueued bounds the responses waiting for one connection: 256 identifiers' worth of
// full-size packets, which a peer that reads at all never reaches.
const maxQueued = 256 * packet.MaxLen

// ErrIdle is returned by ServeConn when it closed a connection that brought no request for
// ServeOptions.IdleTimeout.
var ErrIdle = errors.New("radsec: connection idle")

// closeGrace bounds the TLS close_notify a graceful close sends: a peer that stopped reading
// would otherwise hold it for crypto/tls's 5 s.
const closeGrace = time.Second

// ServeOptions tune ServeConn.
type ServeOptions struct {
	// WriteTimeout bounds each write; a peer that stops reading fails the connection. Default 5s.
	WriteTimeout time.Duration
	// IdleTimeout, if set, closes the connection once no request has arrived for that long; the
	// peer connects again when it has one. Status-Server counts as a request.
	IdleTimeout time.Duration
	// Cork, if set, holds the responses written while a burst of requests read in one go is being
	// handled and writes them together at its end (see sockio).
	Cork *sockio.Cork
}

// ServeConn reads requests from a RadSec peer and calls handle for each with a ReplyFunc that
// queues the response for the connection's writer goroutine, so that no goroutine answering a
// request, nor the end of a Cork's burst, ever waits on this peer (responses that queue up while
// a write is under way leave together in the next). It returns
// when the peer closes the stream (nil), the stream carries garbage (ErrFrame: RFC 6614 §2.1 gives
// no way to resynchronise), or ctx ends (nil). handle must not block for long: it runs on the
// connection's read loop. With IdleTimeout set it returns ErrIdle after closing a quiet connection;
// it returns an error wrapping ErrNotReading when it closed a connection whose peer stopped
// reading or whose writes failed.
func ServeConn(ctx context.Context, nc net.Conn, o ServeOptions, handle func(p packet.Packet, reply ReplyFunc)) error {
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	// The writer has a Cork of its own, used by the writer goroutine alone: what it finds queued
	// goes out in one write, and the shared Cork (o.Cork), which any goroutine may end, never
	// holds a write to this peer.
	var own sockio.Cork
	w := newFrameWriter(nc, o.WriteTimeout, &own)
	q := &replyQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	var aborted atomic.Pointer[error] // why the writing side closed the connection
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := w.run(); err != nil {
			err = fmt.Errorf("%w: %w", ErrNotReading, err)
			aborted.CompareAndSwap(nil, &err)
			abort(nc) // a write failed or timed out: nothing more can reach this peer
		}
	}()
	go func() {
		defer wg.Done()
		q.drain(w, &own)
	}()
	finish := func() {
		// Responses already queued still go out, for as long as the peer takes them.
		q.close()
		select {
		case <-q.done:
		case <-time.After(closeGrace):
		}
		closeWithin(nc, closeGrace)
	}
	stop := context.AfterFunc(ctx, finish)
	defer func() {
		stop()
		finish()
		w.stop()
		wg.Wait()
	}()
	reply := ReplyFunc(func(resp []byte) error {
		err := q.put(resp)
		if errors.Is(err, ErrNotReading) {
			aborted.CompareAndSwap(nil, &err)
			abort(nc)
		}
		return err
	})
	defer corkReads(nc, o.Cork)()
	r := bufio.NewReaderSize(nc, 64<<10)
	for {
		if o.IdleTimeout > 0 && r.Buffered() == 0 {
			// Only before a read that waits on the network: one deadline per burst read, not
			// per packet. Deadlines run on the monotonic clock.
			nc.SetReadDeadline(time.Now().Add(o.IdleTimeout))
		}
		p, err := ReadPacket(r)
		if err != nil {
			if why := aborted.Load(); why != nil && ctx.Err() == nil {
				return *why
			}
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil:
				return nil
			case o.IdleTimeout > 0 && errors.Is(err, os.ErrDeadlineExceeded):
				return ErrIdle
			}
			return err
		}
		handle(p, reply)
	}
}

// replyQueue holds the responses of one connection until its writer goroutine takes them.
type replyQueue struct {
	mu     sync.Mutex
	buf    []byte // whole packets, back to back
	closed bool
	wake   chan struct{} // capacity 1: the writer has something to do
	done   chan struct{} // closed when the writer has written everything and stopped
}

func (q *replyQueue) put(resp []byte) error {
	n, err := packet.FrameLen(resp)
	if err != nil || n > len(resp) {
		return fmt.Errorf("radsec: response is not a RADIUS packet: %d bytes", len(resp))
	}
	resp = resp[:n] // octets past the length field are not part of the packet (RFC 2865 §3)
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return net.ErrClosed
	case len(q.buf)+len(resp) > maxQueued:
		q.closed = true
		q.buf = nil
		q.mu.Unlock()
		q.signal()
		return ErrNotReading
	}
	q.buf = append(q.buf, resp...)
	q.mu.Unlock()
	q.signal()
	return nil
}

func (q *replyQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *replyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// drain runs on the writer goroutine: it hands everything queued to w inside one burst of its
// own Cork, so that the lot leaves in one write, until the queue is closed and empty.
func (q *replyQueue) drain(w *frameWriter, own *sockio.Cork) {
	defer close(q.done)
	var spare []byte
	for range q.wake {
		q.mu.Lock()
		buf, closed := q.buf, q.closed
		q.buf = spare[:0]
		q.mu.Unlock()
		if len(buf) > 0 {
			own.Begin()
			for off := 0; off < len(buf); {
				n, err := packet.FrameLen(buf[off:])
				if err != nil || off+n > len(buf) {
					break // cannot happen: put queues whole packets
				}
				w.write(buf[off : off+n])
				off += n
			}
			own.End()
		}
		spare = buf[:0]
		if closed {
			q.mu.Lock()
			empty := len(q.buf) == 0
			q.mu.Unlock()
			if empty {
				return
			}
			q.signal()
		}
	}
}

// abort closes the socket under a TLS connection: no close_notify, nothing waits on the peer.
func abort(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if bc, ok := nc.(*batchConn); ok {
		nc = bc.Conn
	}
	sockio.Abort(nc)
}

// closeWithin closes nc, giving a TLS connection at most d to send its close_notify before the
// socket under it is closed.
func closeWithin(nc net.Conn, d time.Duration) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		nc.Close()
		return
	}
	t := time.AfterFunc(d, func() { tc.NetConn().Close() })
	tc.Close()
	t.Stop()
}
