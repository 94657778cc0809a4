package radsec

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// Errors a Handler receives. ErrConnDead and ErrClosed mean the request never got an answer from
// this connection and may be retried elsewhere; ErrTimeout means its own deadline passed.
var (
	ErrTimeout  = errors.New("radsec: request timed out")
	ErrConnDead = errors.New("radsec: upstream stopped answering")
	ErrClosed   = errors.New("radsec: connection closed")
	ErrBadReply = errors.New("radsec: reply failed authenticator check")
	ErrBusy     = errors.New("radsec: request queue full")
)

// Handler receives the outcome of one exchange, exactly once, from a connection goroutine. It must
// not block.
type Handler func(resp packet.Packet, err error)

// BuildFunc encodes the request once the connection has chosen its identifier (identifier and
// authenticators are bound together by Message-Authenticator, so the packet is built after).
type BuildFunc func(dst []byte, id uint8) (packet.Packet, error)

// ConnOptions tune a client connection. Zero values take the documented defaults.
type ConnOptions struct {
	Secret []byte // RadSec shared secret; default "radsec" (RFC 6614 §2.3)
	// DeadAfter: the connection is declared dead when its oldest unanswered request (or probe) is
	// this old and nothing at all was received since it was sent. Default 2s.
	DeadAfter time.Duration
	// StatusInterval: when nothing was received for this long, a Status-Server probe is sent
	// (RFC 5997 §4.3 watchdog), so a blackholed idle link is noticed within StatusInterval+DeadAfter.
	// Default 1s.
	StatusInterval time.Duration
	// Quarantine keeps the identifier of a timed-out request out of use so a late reply cannot be
	// taken for the answer to a newer request. Default 30s.
	Quarantine time.Duration
	// MaxQueue bounds the requests waiting for a free identifier. Default 65536.
	MaxQueue int
	Now      func() time.Time
	Logger   *slog.Logger
	// OnRTT, if set, observes every reply's round-trip time (for health and metrics).
	OnRTT func(time.Duration)
	// OnProbe, if set, observes each watchdog Status-Server answer (true) or bad answer (false).
	OnProbe func(ok bool)
	// Cork, if set, holds requests written during a burst until its end, and makes each run of
	// replies read in one go a burst (see sockio).
	Cork *sockio.Cork
}

func (o *ConnOptions) setDefaults() {
	if len(o.Secret) == 0 {
		o.Secret = []byte(DefaultSecret)
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 2 * time.Second
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = time.Second
	}
	if o.Quarantine <= 0 {
		o.Quarantine = 30 * time.Second
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 65536
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

type slot struct {
	state    uint8 // slotFree, slotBusy, slotQuarantined
	probe    bool
	sent     int64 // unix nanos
	deadline int64
	until    int64 // quarantine end
	auth     [packet.AuthLen]byte
	h        Handler
}

const (
	slotFree = iota
	slotBusy
	slotQuarantined
)

type waiter struct {
	build    BuildFunc
	deadline int64
	h        Handler
}

// Conn is a client RadSec connection carrying up to 256 outstanding requests, one per RADIUS
// identifier; further requests wait in FIFO order for an identifier to free up, so a burst is never
// dropped for lack of identifiers (unlike radsecproxy issues #74/#113).
type Conn struct {
	nc   net.Conn
	opts ConnOptions
	w    *frameWriter

	mu       sync.Mutex
	slots    [256]slot
	free     []uint8
	queue    []waiter
	closed   bool
	closeErr error
	probing  bool

	lastRead  atomic.Int64
	inflight  atomic.Int32
	done      chan struct{}
	closeOnce sync.Once
}

// NewConn wraps an established (TLS) connection. Call Run to start it.
func NewConn(nc net.Conn, o ConnOptions) *Conn {
	o.setDefaults()
	c := &Conn{nc: nc, opts: o, done: make(chan struct{})}
	c.w = newFrameWriter(nc, o.DeadAfter+o.StatusInterval, o.Cork)
	c.free = make([]uint8, 0, 256)
	for i := 255; i >= 0; i-- {
		c.free = append(c.free, uint8(i))
	}
	c.lastRead.Store(o.Now().UnixNano())
	return c
}

// Inflight is the number of requests sent and not yet answered.
func (c *Conn) Inflight() int { return int(c.inflight.Load()) }

// Done is closed when the connection has failed or was closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil while it runs).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Exchange sends a request and calls h with the reply or the failure. The request is built by build
// once an identifier is free. It returns an error only when the request was not taken (connection
// closed, queue full); h is not called then.
func (c *Conn) Exchange(build BuildFunc, deadline time.Time, h Handler) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(c.free) == 0 {
		if len(c.queue) >= c.opts.MaxQueue {
			c.mu.Unlock()
			return ErrBusy
		}
		c.queue = append(c.queue, waiter{build: build, deadline: deadline.UnixNano(), h: h})
		c.mu.Unlock()
		return nil
	}
	id := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	c.mu.Unlock()
	return c.send(id, build, deadline.UnixNano(), h, false)
}

// send builds and writes a request on identifier id, which the caller has taken.
func (c *Conn) send(id uint8, build BuildFunc, deadline int64, h Handler, probe bool) error {
	p, err := build(nil, id)
	if err != nil {
		c.release(id)
		return fmt.Errorf("radsec: build request: %w", err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	s := &c.slots[id]
	s.state, s.probe, s.h = slotBusy, probe, h
	s.sent, s.deadline = c.opts.Now().UnixNano(), deadline
	copy(s.auth[:], p.Authenticator())
	c.mu.Unlock()
	c.inflight.Add(1)
	if err := c.w.write(p); err != nil {
		c.fail(err)
	}
	return nil
}

// release returns an identifier to the pool, or hands it straight to the next waiter.
func (c *Conn) release(id uint8) {
	c.mu.Lock()
	c.slots[id] = slot{}
	if len(c.queue) > 0 && !c.closed {
		w := c.queue[0]
		c.queue[0] = waiter{}
		c.queue = c.queue[1:]
		c.mu.Unlock()
		c.send(id, w.build, w.deadline, w.h, false)
		return
	}
	c.free = append(c.free, id)
	c.mu.Unlock()
}

// Run reads replies and runs the watchdog until ctx is cancelled or the connection fails. It returns
// nil on cancel and the failure otherwise, after every pending request's Handler has been called.
func (c *Conn) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.readLoop() }()
	go func() {
		defer wg.Done()
		if err := c.w.run(); err != nil {
			c.fail(err)
		}
	}()
	go func() { defer wg.Done(); c.watchdog(ctx) }()
	select {
	case <-ctx.Done():
		c.fail(ErrClosed)
	case <-c.done:
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return c.Err()
}

// Close ends the connection; pending requests fail with ErrClosed.
func (c *Conn) Close() { c.fail(ErrClosed) }

// fail closes the connection once and completes every pending and queued request with err.
func (c *Conn) fail(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.closeErr = err
		var hs []Handler
		for i := range c.slots {
			if c.slots[i].state == slotBusy && !c.slots[i].probe {
				hs = append(hs, c.slots[i].h)
			}
			c.slots[i] = slot{}
		}
		for _, w := range c.queue {
			hs = append(hs, w.h)
		}
		c.queue = nil
		c.mu.Unlock()
		c.w.stop()
		c.nc.Close()
		close(c.done)
		retry := err
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrConnDead) {
			retry = fmt.Errorf("%w: %w", ErrConnDead, err)
		}
		for _, h := range hs {
			h(nil, retry)
		}
		c.inflight.Store(0)
	})
}

func (c *Conn) readLoop() {
	defer corkReads(c.nc, c.opts.Cork)()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		p, err := ReadPacket(r)
		if err != nil {
			c.fail(fmt.Errorf("radsec: read: %w", err))
			return
		}
		now := c.opts.Now().UnixNano()
		c.lastRead.Store(now)
		c.dispatch(p, now)
	}
}

func (c *Conn) dispatch(p packet.Packet, now int64) {
	id := p.ID()
	c.mu.Lock()
	s := c.slots[id]
	if s.state != slotBusy {
		c.mu.Unlock()
		c.opts.Logger.Debug("unexpected reply", "id", id, "code", p.Code())
		return
	}
	c.mu.Unlock()
	c.inflight.Add(-1)
	if c.opts.OnRTT != nil {
		c.opts.OnRTT(time.Duration(now - s.sent))
	}
	// RFC 6614 §2.3 keeps the RADIUS authenticators: a reply that does not verify fails only its
	// own request, never the connection.
	var err error
	checkMA := packet.CheckResponseMA
	if s.probe {
		checkMA = packet.CheckStatusReplyMA
	}
	if !packet.CheckResponseAuthenticator(p, s.auth[:], c.opts.Secret) ||
		checkMA(p, s.auth[:], c.opts.Secret) == packet.MAInvalid {
		err = ErrBadReply
	}
	if s.probe {
		c.mu.Lock()
		c.probing = false
		c.mu.Unlock()
	}
	c.release(id)
	if s.probe {
		if c.opts.OnProbe != nil {
			c.opts.OnProbe(err == nil)
		}
		return
	}
	if err != nil {
		s.h(nil, err)
		return
	}
	s.h(p, nil)
}

// watchdog times out requests, quarantines their identifiers, probes an idle connection with
// Status-Server and declares the connection dead when nothing comes back.
func (c *Conn) watchdog(ctx context.Context) {
	tick := c.opts.StatusInterval / 4
	if tick > 250*time.Millisecond {
		tick = 250 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
		}
		c.check(c.opts.Now().UnixNano())
	}
}

// check is one watchdog pass at time now (separate for tests).
func (c *Conn) check(now int64) {
	var expired []Handler
	var freed []uint8
	// newestOld is the latest send time among requests unanswered for at least DeadAfter. If nothing
	// at all was received since it was sent, the peer has been silent for DeadAfter while it owed us
	// an answer: the connection is dead (a blackholed link sends no RST).
	newestOld := int64(0)
	cutoff := now - int64(c.opts.DeadAfter)
	c.mu.Lock()
	for i := range c.slots {
		s := &c.slots[i]
		switch s.state {
		case slotBusy:
			if s.sent <= cutoff && s.sent > newestOld {
				newestOld = s.sent
			}
			if !s.probe && s.deadline > 0 && now >= s.deadline {
				expired = append(expired, s.h)
				s.h = nil
				s.state = slotQuarantined
				s.until = now + int64(c.opts.Quarantine)
			}
		case slotQuarantined:
			if s.sent <= cutoff && s.sent > newestOld {
				newestOld = s.sent
			}
			if now >= s.until {
				freed = append(freed, uint8(i))
			}
		}
	}
	// Queued requests can expire before they ever get an identifier.
	kept := c.queue[:0]
	for _, w := range c.queue {
		if w.deadline > 0 && now >= w.deadline {
			expired = append(expired, w.h)
			continue
		}
		kept = append(kept, w)
	}
	c.queue = kept
	probe := !c.probing && !c.closed && now-c.lastRead.Load() >= int64(c.opts.StatusInterval) && len(c.free) > 0
	c.mu.Unlock()

	c.inflight.Add(int32(-len(expired)))
	for _, h := range expired {
		if h != nil {
			h(nil, ErrTimeout)
		}
	}
	for _, id := range freed {
		c.release(id)
	}
	if newestOld != 0 && c.lastRead.Load() <= newestOld {
		c.fail(fmt.Errorf("%w: no reply for %v", ErrConnDead, time.Duration(now-newestOld).Round(time.Millisecond)))
		return
	}
	if probe {
		c.sendProbe()
	}
}

func (c *Conn) sendProbe() {
	c.mu.Lock()
	if len(c.free) == 0 || c.probing || c.closed {
		c.mu.Unlock()
		return
	}
	c.probing = true
	id := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	c.mu.Unlock()
	c.send(id, func(dst []byte, id uint8) (packet.Packet, error) {
		return StatusServer(dst, id, c.opts.Secret)
	}, 0, nil, true)
}

// StatusServer builds a Status-Server request (RFC 5997 §3: Message-Authenticator is mandatory).
func StatusServer(dst []byte, id uint8, secret []byte) (packet.Packet, error) {
	var auth [packet.AuthLen]byte
	rand.Read(auth[:])
	b := packet.New(dst, packet.CodeStatusServer, id, auth[:])
	b.AddMA()
	b.AddString(packet.AttrNASIdentifier, "mxedge")
	return b.Finish(secret, nil)
}
