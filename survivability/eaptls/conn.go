package eaptls

import (
	"net"
	"sync"
	"time"
)

// crypto/tls wants a net.Conn and drives the handshake by blocking reads and
// writes; EAP gives us one packet at a time. tlsPipe runs the TLS side in its
// own goroutine over memConn and moves in lockstep with the EAP side:
//
//	driver (Step)                         handshake goroutine
//	feed(peer flight) --inCh-->           Read returns the flight
//	                                      ...TLS processes, Write buffers...
//	wait()            <--evCh-- event{out} Read on empty input: our flight is
//	                                      complete, hand it over and block
//
// A Read on empty input is the only point where the TLS stack waits for the
// peer, so it is exactly the point where its outgoing flight is complete.
// The goroutine exits when the TLS function returns, when close() is called,
// or when the conversation deadline passes while it waits for input, so an
// abandoned conversation never leaks it.

// event is what the handshake goroutine reports to the driver.
type event struct {
	out  []byte  // TLS bytes to send to the peer (may be empty)
	done bool    // the TLS function returned; no more events follow
	err  error   // when done: why it failed
	res  *Result // when done without error
}

type tlsPipe struct {
	inCh     chan []byte
	evCh     chan event // capacity 1: the final event never blocks the goroutine
	quit     chan struct{}
	exited   chan struct{}
	once     sync.Once
	deadline time.Time
	started  bool
}

func newPipe(deadline time.Time) *tlsPipe {
	return &tlsPipe{
		inCh:     make(chan []byte),
		evCh:     make(chan event, 1),
		quit:     make(chan struct{}),
		exited:   make(chan struct{}),
		deadline: deadline,
	}
}

// start runs fn in the handshake goroutine and returns its first event: the
// first flight (client) or an empty "waiting for input" (server). in, when
// not nil, is already queued as the first input, which saves a round trip
// through the channels for the server's ClientHello.
func (p *tlsPipe) start(isServer bool, in []byte, fn func(c *memConn) event) event {
	p.started = true
	c := &memConn{p: p, in: in, sniffIn: in != nil, isServer: isServer}
	if c.sniffIn {
		c.sniff(in, false)
	}
	go func() {
		defer close(p.exited)
		ev := fn(c)
		ev.out = c.takeOut()
		ev.done = true
		select {
		case p.evCh <- ev:
		case <-p.quit:
		}
	}()
	return p.wait()
}

// feed hands the peer's reassembled TLS message to the goroutine and waits
// for its answer.
func (p *tlsPipe) feed(in []byte) event {
	select {
	case p.inCh <- in:
	case <-p.exited:
	}
	return p.wait()
}

func (p *tlsPipe) wait() event {
	t := time.NewTimer(time.Until(p.deadline))
	defer t.Stop()
	select {
	case ev := <-p.evCh:
		return ev
	case <-p.exited:
		select {
		case ev := <-p.evCh:
			return ev
		default:
			return event{done: true, err: ErrClosed}
		}
	case <-t.C:
		return event{done: true, err: ErrTimeout}
	}
}

// close stops the goroutine and waits until it has exited. Idempotent.
func (p *tlsPipe) close() {
	p.once.Do(func() { close(p.quit) })
	if p.started {
		<-p.exited
	}
}

// memConn is the handshake goroutine's end of the pipe. Only that goroutine
// touches its buffers.
type memConn struct {
	p   *tlsPipe
	in  []byte
	out []byte

	// Hello randoms, sniffed from the first plaintext handshake records for
	// the RFC 5216 TLS 1.2 Session-Id, which crypto/tls does not expose.
	sniffIn, sniffOut bool
	clientRandom      []byte
	serverRandom      []byte
	isServer          bool
}

const (
	recordHeaderLen   = 5
	handshakeHeadLen  = 4
	helloVersionLen   = 2
	helloRandomLen    = 32
	recordTypeHandshk = 22
	recordTypeAlert   = 21
	hsClientHello     = 1
	hsServerHello     = 2
)

// helloRandom returns the random of a ClientHello or ServerHello at the
// start of b (RFC 5246 §7.4.1.2-3), or nil.
func helloRandom(b []byte, hsType byte) []byte {
	const off = recordHeaderLen + handshakeHeadLen + helloVersionLen
	if len(b) < off+helloRandomLen || b[0] != recordTypeHandshk || b[recordHeaderLen] != hsType {
		return nil
	}
	return append([]byte(nil), b[off:off+helloRandomLen]...)
}

// sniff records the hello random from the first chunk in either direction.
func (c *memConn) sniff(b []byte, outgoing bool) {
	fromClient := outgoing != c.isServer
	typ := byte(hsServerHello)
	if fromClient {
		typ = hsClientHello
	}
	r := helloRandom(b, typ)
	if fromClient {
		c.clientRandom = r
	} else {
		c.serverRandom = r
	}
}

func (c *memConn) takeOut() []byte {
	out := c.out
	c.out = nil
	return out
}

// Read blocks only when the peer's last flight is consumed: it then hands
// over everything written so far and waits for the next flight.
func (c *memConn) Read(b []byte) (int, error) {
	if len(c.in) == 0 {
		select {
		case c.p.evCh <- event{out: c.takeOut()}:
		case <-c.p.quit:
			return 0, net.ErrClosed
		}
		t := time.NewTimer(time.Until(c.p.deadline))
		defer t.Stop()
		select {
		case in := <-c.p.inCh:
			c.in = in
			if !c.sniffIn {
				c.sniffIn = true
				c.sniff(in, false)
			}
		case <-c.p.quit:
			return 0, net.ErrClosed
		case <-t.C:
			return 0, ErrTimeout
		}
	}
	n := copy(b, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	select {
	case <-c.p.quit:
		return 0, net.ErrClosed
	default:
	}
	if !c.sniffOut {
		c.sniffOut = true
		c.sniff(b, true)
	}
	c.out = append(c.out, b...)
	return len(b), nil
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return eapAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return eapAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type eapAddr struct{}

func (eapAddr) Network() string { return "eap" }
func (eapAddr) String() string  { return "eap" }
