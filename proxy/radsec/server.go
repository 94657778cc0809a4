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
)

// ReplyFunc queues a response on the stream a request came from. It never blocks on the network.
type ReplyFunc func(resp []byte) error

// ServeConn reads requests from a RadSec peer and calls handle for each with a ReplyFunc that
// writes to the same stream (responses coalesced like requests on client connections). It returns
// when the peer closes the stream (nil), the stream carries garbage (ErrFrame: RFC 6614 §2.1 gives
// no way to resynchronise), or ctx ends (nil). handle must not block for long: it runs on the
// connection's read loop.
func ServeConn(ctx context.Context, nc net.Conn, writeTimeout time.Duration, handle func(p packet.Packet, reply ReplyFunc)) error {
	w := newFrameWriter(nc, writeTimeout)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if w.run() != nil {
			nc.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer func() {
		stop()
		w.stop()
		wg.Wait()
		nc.Close()
	}()
	reply := ReplyFunc(w.write)
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
