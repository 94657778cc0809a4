package radsec

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// ReplyFunc queues a response on the stream a request came from. It never blocks on the network.
type ReplyFunc func(resp []byte) error

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
// writes to the same stream (responses coalesced like requests on client connections). It returns
// when the peer closes the stream (nil), the stream carries garbage (ErrFrame: RFC 6614 §2.1 gives
// no way to resynchronise), or ctx ends (nil). handle must not block for long: it runs on the
// connection's read loop. With IdleTimeout set it returns ErrIdle after closing a quiet connection.
func ServeConn(ctx context.Context, nc net.Conn, o ServeOptions, handle func(p packet.Packet, reply ReplyFunc)) error {
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	w := newFrameWriter(nc, o.WriteTimeout, o.Cork)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if w.run() != nil {
			nc.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		w.Flush() // responses held for the end of a burst still go out
		closeWithin(nc, closeGrace)
	})
	defer func() {
		stop()
		w.stop()
		wg.Wait()
		closeWithin(nc, closeGrace)
	}()
	reply := ReplyFunc(w.write)
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
