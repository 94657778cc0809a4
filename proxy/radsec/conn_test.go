package radsec

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

func accessRequest(dst []byte, id uint8, user string, pad int) (packet.Packet, error) {
	b := packet.New(dst, packet.CodeAccessRequest, id, make([]byte, packet.AuthLen))
	b.AddMA()
	b.AddString(packet.AttrUserName, user)
	for pad > 0 {
		n := min(pad, 253)
		b.Add(packet.AttrReplyMessage, make([]byte, n))
		pad -= n + 2
	}
	return b.Finish([]byte(DefaultSecret), nil)
}

func accept(tb testing.TB, req packet.Packet) packet.Packet {
	tb.Helper()
	b := packet.NewResponse(nil, req, packet.CodeAccessAccept)
	resp, err := b.Finish([]byte(DefaultSecret), req.Authenticator())
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// TestConnIDsFIFO: a freed identifier goes to the back of the line, so the next request takes the
// least recently used one and a late duplicate reply is unlikely to meet a newer request.
func TestConnIDsFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		c := NewConn(client, ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx)
		r := bufio.NewReader(server)
		var ids []uint8
		for range 3 {
			done := make(chan struct{})
			c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return accessRequest(dst, id, "u", 0) },
				time.Now().Add(time.Second), func(packet.Packet, error) { close(done) })
			p, err := ReadPacket(r)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, p.ID())
			server.Write(accept(t, p))
			<-done
		}
		if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
			t.Fatalf("identifiers %v: a freed one was reused first", ids)
		}
	})
}

// TestConnLateDuplicateDiscarded: a second reply to an answered request, and a reply arriving after
// its request timed out, are discarded and counted; neither completes anything.
func TestConnLateDuplicateDiscarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		obs := new(countObserver)
		c := NewConn(client, ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour, Observer: obs})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx)
		r := bufio.NewReader(server)
		var calls [2]atomic.Int32
		var errs [2]error
		for i := range 2 {
			c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return accessRequest(dst, id, "u", 0) },
				time.Now().Add(time.Second), func(_ packet.Packet, err error) { calls[i].Add(1); errs[i] = err })
		}
		p0, _ := ReadPacket(r)
		p1, _ := ReadPacket(r)
		server.Write(accept(t, p0))
		server.Write(accept(t, p0)) // duplicate
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		server.Write(accept(t, p1)) // late: its request timed out
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if calls[0].Load() != 1 || errs[0] != nil {
			t.Fatalf("answered request: %d calls, %v", calls[0].Load(), errs[0])
		}
		if calls[1].Load() != 1 || !errors.Is(errs[1], ErrTimeout) {
			t.Fatalf("timed-out request: %d calls, %v", calls[1].Load(), errs[1])
		}
		if n := obs.discarded.Load(); n != 2 {
			t.Fatalf("%d replies discarded, want 2", n)
		}
	})
}

// TestConnStallAbortsAtOnce: over real TCP and TLS, a peer that stops reading fills the socket
// buffers. Exchange never waits for it; the connection fails with ErrStalled about StallAfter after
// writes stop moving, every request gets a retryable error, and Run returns at once (the socket is
// aborted, not closed with a close_notify that would wait for the dead link).
func TestConnStallAbortsAtOnce(t *testing.T) {
	lab := pkitest.Must(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	handshook := make(chan net.Conn, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		raw.(*net.TCPConn).SetReadBuffer(4096)
		tc := tls.Server(raw, lab.ServerTLS())
		tc.Handshake()
		handshook <- raw // and never read again
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).SetWriteBuffer(4096)
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	nc := Client(raw, cfg)
	if err := nc.Handshake(); err != nil {
		t.Fatal(err)
	}
	peer := <-handshook
	defer peer.Close()
	const stall = 200 * time.Millisecond
	c := NewConn(nc, ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour, StallAfter: stall})
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(context.Background()) }()

	var mu sync.Mutex
	var errs []error
	var slowest time.Duration
	start := time.Now()
	for range 256 {
		t0 := time.Now()
		err := c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return accessRequest(dst, id, "u", 3000) },
			time.Now().Add(time.Minute), func(_ packet.Packet, err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
		if err != nil {
			break // failed already: refused
		}
	}
	sent := time.Since(start)
	var runErr error
	select {
	case runErr = <-runDone:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2 s of a stall")
	}
	total := time.Since(start)
	if !errors.Is(runErr, ErrStalled) {
		t.Fatalf("Run: %v, want ErrStalled", runErr)
	}
	// An Exchange that waited for the socket would wait until the stall aborted it (the peer never
	// reads); half the stall bound tells that apart from scheduling delays on a loaded machine
	// (65 ms seen under the race detector on two busy cores).
	if slowest > stall/2 {
		t.Fatalf("an Exchange took %v: the caller waited for the socket", slowest)
	}
	if total > stall+800*time.Millisecond {
		t.Fatalf("Run returned %v after the writes began (stall bound %v)", total, stall)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		if !errors.Is(err, ErrConnDead) {
			t.Fatalf("request failed with %v, want a retryable ErrConnDead", err)
		}
	}
	t.Logf("256 requests of ~3 kB queued in %v (slowest %v); stalled and aborted after %v; %d handlers failed over",
		sent.Round(time.Microsecond), slowest.Round(time.Microsecond), total.Round(time.Millisecond), len(errs))
}

// TestConnDeadWhileProbeDue: the watchdog pass that finds the connection dead may also have reserved
// an identifier for a probe; Run must still return (the reservation is completed, not leaked).
func TestConnDeadWhileProbeDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		go func() { // a blackhole: reads everything, answers nothing
			buf := make([]byte, 4096)
			for {
				if _, err := server.Read(buf); err != nil {
					return
				}
			}
		}()
		c := NewConn(client, ConnOptions{StatusInterval: time.Second, DeadAfter: time.Second})
		runErr := make(chan error, 1)
		go func() { runErr <- c.Run(context.Background()) }()
		failed := make(chan error, 1)
		c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return accessRequest(dst, id, "u", 0) },
			time.Now().Add(time.Hour), func(_ packet.Packet, err error) { failed <- err })
		if err := <-runErr; !errors.Is(err, ErrConnDead) {
			t.Fatalf("Run: %v", err)
		}
		if err := <-failed; !errors.Is(err, ErrConnDead) {
			t.Fatalf("request: %v", err)
		}
	})
}

// TestConnWritesAfterAWait: a connection whose writer once had to wait for the socket (the peer
// paused reading, shorter than StallAfter) keeps writing inline afterwards, also once that wait's
// deadline is long past: deadlines govern only the writer's wait.
func TestConnWritesAfterAWait(t *testing.T) {
	lab := pkitest.Must(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gate := make(chan struct{})
	var served atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(raw, lab.ServerTLS())
		if tc.Handshake() != nil {
			return
		}
		<-gate // paused: the client's socket buffer fills
		ServeConn(ctx, tc, ServeOptions{}, func(p packet.Packet, reply ReplyFunc) { served.Add(1); reply(accept(t, p)) })
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).SetWriteBuffer(4096)
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	nc := Client(raw, cfg)
	if err := nc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Generous: a loaded machine must not starve the peer's reader for longer than this.
	const stall = 1500 * time.Millisecond
	c := NewConn(nc, ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour, StallAfter: stall})
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	send := func(n int) []error {
		errs := make(chan error, n)
		for range n {
			if err := c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return accessRequest(dst, id, "u", 3000) },
				time.Now().Add(5*time.Second), func(_ packet.Packet, err error) { errs <- err }); err != nil {
				t.Fatal(err)
			}
		}
		if n > 1 {
			time.Sleep(stall / 4)
			close(gate) // reading again before StallAfter
		}
		var out []error
		for range n {
			out = append(out, <-errs)
		}
		return out
	}
	for _, err := range send(250) {
		if err != nil {
			t.Fatalf("while the peer paused: %v (served %d)", err, served.Load())
		}
	}
	time.Sleep(stall + 200*time.Millisecond) // the writer's last deadline is in the past
	for _, err := range send(1) {
		if err != nil {
			t.Fatalf("after the pause: %v", err)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("connection failed: %v", err)
	}
}
