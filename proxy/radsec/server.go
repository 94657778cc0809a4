package radsec

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// ReplyFunc queues a response on the stream a request came from. It never blocks on the network.
type ReplyFunc func(resp []byte) error

// ServeOptions tune ServeConn.
type ServeOptions struct {
	// WriteTimeout bounds each write; a peer that stops reading fails the connection. Default 5s.
	WriteTimeout time.Duration
	// Cork, if set, holds the responses written while a burst of requests read in one go is being
	// handled and writes them together at its end (see sockio).
	Cork *sockio.Cork
}

// ServeConn reads requests from a RadSec peer and calls handle for each with a ReplyFunc that
// writes to the same stream (responses coalesced like requests on client connections). It returns
// when the peer closes the stream (nil), the stream carries garbage (ErrFrame: RFC 6614 §2.1 gives
// no way to resynchronise), or ctx ends (nil). handle must not block for long: it runs on the
// connection's read loop.
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
		nc.Close()
	})
	defer func() {
		stop()
		w.stop()
		wg.Wait()
		nc.Close()
	}()
	reply := ReplyFunc(w.write)
	defer corkReads(nc, o.Cork)()
	r := bufio.NewReaderSize(nc, 64<<10)
	for {
		p, err := ReadPacket(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		handle(p, reply)
	}
}
