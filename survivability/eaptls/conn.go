package eaptls

import (
	"iter"
	"net"
	"sync"
	"time"
)

// crypto/tls wants a net.Conn and drives the handshake by blocking reads and
// writes; EAP gives us one packet at a time. tlsPipe runs the TLS side as a
// coroutine (iter.Pull) over memConn and moves in lockstep with the EAP side:
//
//	driver (Step)                         handshake coroutine
//	feed(peer flight): p.in = flight,
//	next() ------------------------->     Read returns the flight
//	                                      ...TLS processes, Write buffers...
//	next returns event{out} <--------     Read on empty input: our flight is
//	                                      complete, yield it and suspend
//
// A Read on empty input is the only point where the TLS stack waits for the
// peer, so it is exactly the point where its outgoing flight is complete.
// next and yield switch directly between the two goroutines on the same
// thread, without the scheduler: a channel hand-off instead woke another
// thread and parked the driver on every flight, which cost more CPU than the
// TLS record work (docs/performance.md, local EAP-TLS).
//
// The coroutine ends when the TLS function returns, when close is called,
// or at the conversation deadline (a timer closes the pipe), so an abandoned
// conversation never leaks it.

// event is what the handshake coroutine reports to the driver.
type event struct {
	out  []byte  // TLS bytes to send to the peer (may be empty)
	done bool    // the TLS function returned; no more events follow
	err  error   // when done: why it failed
	res  *Result // when done without error
}

type tlsPipe struct {
	// mu serialises next and stop: the driver's Step and the deadline timer.
	mu       sync.Mutex
	next     func() (event, bool)
	stop     func()
	in       []byte // the peer's flight for the coroutine's next Read
	closed   bool   // close was called; Write fails from then on
	exited   chan struct{}
	timer    *time.Timer
	deadline time.Time
	started  bool
}

func newPipe(deadline time.Time) *tlsPipe {
	return &tlsPipe{exited: make(chan struct{}), deadline: deadline}
}

// start runs fn in the handshake coroutine and returns its first event: the
// first flight (client) or an empty "waiting for input" (server). in, when
// not nil, is already queued as the first input, which saves a switch for
// the server's ClientHello.
func (p *tlsPipe) start(isServer bool, in []byte, fn func(c *memConn) event) event {
	p.started = true
	c := &memConn{p: p, in: in, sniffIn: in != nil, isServer: isServer}
	if c.sniffIn {
		c.sniff(in, false)
	}
	p.next, p.stop = iter.Pull(func(yield func(event) bool) {
		defer close(p.exited)
		c.yield = yield
		growStack(stackReserve - 1)
		ev := fn(c)
		ev.out = c.takeOut()
		ev.done = true
		yield(ev)
	})
	p.timer = time.AfterFunc(time.Until(p.deadline), p.close)
	return p.wait()
}

// stackReserve is the stack the handshake coroutine is given up front. A
// full crypto/tls handshake with certificate verification runs about 20 KiB
// deep; a goroutine starts with a few KiB and doubles its stack on demand,
// each time copying and adjusting every frame, which deep in the handshake
// cost a tenth of the server's CPU per authentication. Growing it once, at
// the bottom of the coroutine where there is one frame to move, is cheap.
const stackReserve = 24 << 10

// growStack makes the runtime grow the calling goroutine's stack to hold
// stackReserve bytes while the stack is still shallow. i (stackReserve-1)
// is an argument so that the compiler cannot drop the array.
//
//go:noinline
func growStack(i int) byte {
	var b [stackReserve]byte
	b[i] = byte(i)
	return b[i/2] + b[i]
}

// feed hands the peer's reassembled TLS message to the coroutine and returns
// its answer.
func (p *tlsPipe) feed(in []byte) event {
	p.in = in
	return p.wait()
}

func (p *tlsPipe) wait() event {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.closedEvent()
	}
	if !time.Now().Before(p.deadline) {
		p.closeLocked()
		return event{done: true, err: ErrTimeout}
	}
	ev, ok := p.next()
	if !ok {
		return p.closedEvent()
	}
	if ev.done {
		// Let the coroutine return now rather than at close.
		p.closeLocked()
	}
	return ev
}

func (p *tlsPipe) closedEvent() event {
	if !time.Now().Before(p.deadline) {
		return event{done: true, err: ErrTimeout}
	}
	return event{done: true, err: ErrClosed}
}

// close ends the coroutine; when it returns the coroutine has exited.
// Idempotent, and safe from the deadline timer while the driver steps.
func (p *tlsPipe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

func (p *tlsPipe) closeLocked() {
	if p.closed {
		return
	}
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.stop != nil {
		p.stop() // resumes a suspended Read with net.ErrClosed and runs fn to its end
	}
}

// memConn is the handshake coroutine's end of the pipe. Only the coroutine
// touches its buffers.
type memConn struct {
	p     *tlsPipe
	yield func(event) bool
	in    []byte
	out   []byte

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

// Read suspends only when the peer's last flight is consumed: it then yields
// everything written so far and waits for the next flight.
func (c *memConn) Read(b []byte) (int, error) {
	if len(c.in) == 0 {
		if !c.yield(event{out: c.takeOut()}) {
			return 0, net.ErrClosed
		}
		c.in, c.p.in = c.p.in, nil
		if !c.sniffIn {
			c.sniffIn = true
			c.sniff(c.in, false)
		}
	}
	n := copy(b, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	if c.p.closed {
		return 0, net.ErrClosed
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
