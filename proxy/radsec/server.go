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

// ErrNotReading is returned by a ReplyFunc whose peer has stopped reading (its responses made no
// progress for WriteTimeout, or more than 4 MiB of them wait), and wraps what ServeConn returns
// when it closed a connection for that reason or because a write failed.
var ErrNotReading = errors.New("radsec: peer not reading its responses")

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
// hands the response to the connection's frameWriter, which never waits on the peer: it seals the
// record and writes what the socket takes at once, and its own goroutine drains the rest, so no
// goroutine answering a request, nor the end of a Cork's burst, waits on this peer. A peer that
// stops reading (its responses make no progress for WriteTimeout, or more than 4 MiB wait) has its
// connection closed. ServeConn returns when the peer closes the stream (nil), the stream carries
// garbage (ErrFrame: RFC 6614 §2.1 gives no way to resynchronise), or ctx ends (nil). handle must
// not block for long: it runs on the connection's read loop. With IdleTimeout set it returns
// ErrIdle after closing a quiet connection; it returns an error wrapping ErrNotReading when it
// closed a connection whose peer stopped reading or whose writes failed.
func ServeConn(ctx context.Context, nc net.Conn, o ServeOptions, handle func(p packet.Packet, reply ReplyFunc)) error {
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	w := newFrameWriter(nc, o.WriteTimeout, o.Cork)
	var aborted atomic.Pointer[error] // why the writing side closed the connection
	notReading := func(err error) {
		err = fmt.Errorf("%w: %w", ErrNotReading, err)
		if aborted.CompareAndSwap(nil, &err) {
			abort(nc) // nothing more can reach this peer
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.run(); err != nil {
			notReading(err)
		}
	}()
	finish := func() {
		w.Flush() // what a burst still holds goes out, as far as the peer takes it
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
		n, err := packet.FrameLen(resp)
		if err != nil || n > len(resp) {
			return fmt.Errorf("radsec: response is not a RADIUS packet: %d bytes", len(resp))
		}
		// Octets past the length field are not part of the packet (RFC 2865 §3).
		if err := w.write(resp[:n]); err != nil {
			if why := aborted.Load(); why != nil {
				return *why
			}
			notReading(err)
			return *aborted.Load()
		}
		return nil
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
