package radsec

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// servePair runs ServeConn over loopback TCP with o and returns the client side, the first
// request's ReplyFunc and ServeConn's result.
func servePair(t *testing.T, o ServeOptions) (*tls.Conn, ReplyFunc, <-chan error) {
	t.Helper()
	lab := pkitest.Must(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	replies := make(chan ReplyFunc, 1)
	result := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		result <- ServeConn(ctx, Server(nc, lab.ServerTLS()), o, func(p packet.Packet, reply ReplyFunc) {
			select {
			case replies <- reply:
			default:
			}
		})
	}()
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("ServeConn did not return")
		}
	})
	if _, err := c.Write(statusPacket(t, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-replies:
		return c, r, result
	case <-time.After(3 * time.Second):
		t.Fatal("no request reached the handler")
	}
	return nil, nil, nil
}

// bigResponse is a full-size packet (only its length field matters to the writer).
func bigResponse(id uint8) []byte {
	b := make([]byte, packet.MaxLen)
	b[0], b[1] = byte(packet.CodeAccessAccept), id
	binary.BigEndian.PutUint16(b[2:], packet.MaxLen)
	return b
}

// TestReplyNeverBlocksOnAPeerThatStopsReading: a peer that stops reading fills the socket buffers;
// neither the goroutines answering its requests nor the end of a shared Cork's burst may wait on
// it (they would stall the socket they read for every other peer). Once its queue is full the
// ReplyFunc says so and the connection is closed.
func TestReplyNeverBlocksOnAPeerThatStopsReading(t *testing.T) {
	var shared sockio.Cork
	_, reply, result := servePair(t, ServeOptions{Cork: &shared, WriteTimeout: 30 * time.Second})
	var slowest time.Duration
	stalled := false
	// The client never reads: loopback buffers take a few MiB, the writer 4 MiB more.
	for i := 0; i < 20000 && !stalled; i++ {
		start := time.Now()
		shared.Begin()
		err := reply(bigResponse(uint8(i)))
		shared.End()
		slowest = max(slowest, time.Since(start))
		switch {
		case errors.Is(err, ErrNotReading):
			stalled = true
		case err != nil:
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	if !stalled {
		t.Fatal("20000 full-size responses queued to a peer that reads nothing")
	}
	if slowest > 200*time.Millisecond {
		t.Fatalf("a reply and its burst's end took %v: a writer waited on the peer", slowest)
	}
	select {
	case err := <-result:
		if !errors.Is(err, ErrNotReading) {
			t.Fatalf("ServeConn returned %v, want ErrNotReading", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("connection to a stalled peer not closed")
	}
	if err := reply(bigResponse(1)); err == nil {
		t.Fatal("reply accepted after the connection closed")
	}
	t.Logf("slowest reply %v", slowest)
}

// TestIdleTimeout: ServeConn closes a connection without requests for IdleTimeout and says so.
func TestIdleTimeout(t *testing.T) {
	c, _, result := servePair(t, ServeOptions{IdleTimeout: 200 * time.Millisecond})
	select {
	case err := <-result:
		if !errors.Is(err, ErrIdle) {
			t.Fatalf("ServeConn returned %v, want ErrIdle", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("idle connection not closed")
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, packet.MaxLen)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the peer does not see the close")
			}
			break // the Status-Server answer, if any, came first
		}
	}
}

// BenchmarkServeConn: a client keeps 64 requests outstanding on one connection; the handler
// answers each at once, from the reading goroutine, as the front door answers Status-Server.
func BenchmarkServeConn(b *testing.B) {
	lab := pkitest.Must(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var cork sockio.Cork
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		ServeConn(ctx, Server(nc, lab.ServerTLS()), ServeOptions{Cork: &cork}, func(p packet.Packet, reply ReplyFunc) {
			resp := append([]byte(nil), p...)
			resp[0] = byte(packet.CodeAccessAccept)
			reply(resp)
		})
	}()
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { c.Close(); cancel(); <-done }()
	req := statusPacket(b, 0)
	const window = 64
	r := bufio.NewReader(c)
	errs := make(chan error, 1)
	sent := make(chan struct{}, window)
	go func() {
		for range sent {
			if _, err := ReadPacket(r); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	start := time.Now()
	n := 0
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		sent <- struct{}{}
		n++
	}
	close(sent)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
}
