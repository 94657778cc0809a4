package radsec

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
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
// this connection and may be retried elsewhere; ErrTimeout means its own deadline passed; ErrBuild
// means the request could not be encoded (retrying elsewhere would fail the same way); ErrBadReply
// means its deadline passed after the only replies that came failed verification.
var (
	ErrTimeout  = errors.New("radsec: request timed out")
	ErrConnDead = errors.New("radsec: upstream stopped answering")
	ErrClosed   = errors.New("radsec: connection closed")
	ErrBadReply = errors.New("radsec: invalid reply")
	ErrBusy     = errors.New("radsec: request queue full")
	ErrBuild    = errors.New("radsec: build request")
	ErrStalled  = errors.New("radsec: writes stalled") // also what a ReplyFunc returns when its peer stopped reading
)

// Handler receives the outcome of one exchange, exactly once. It runs on a connection goroutine, or
// on the caller's when the request cannot be built, and must not block.
type Handler func(resp packet.Packet, err error)

// BuildFunc encodes the request once the connection has chosen its identifier (identifier and
// authenticators are bound together by Message-Authenticator, so the packet is built after).
type BuildFunc func(dst []byte, id uint8) (packet.Packet, error)

// Observer sees a connection's events, for health and metrics. The connection declares it because
// it calls it, from its own goroutines: it must not block.
type Observer interface {
	// RTT observes the round-trip time of every verified reply.
	RTT(d time.Duration)
	// Probe observes each watchdog Status-Server answer (true) or answer that failed verification.
	Probe(ok bool)
	// Discarded observes a reply dropped without completing anything: it failed verification
	// (ErrBadReply) or matched no outstanding request (a late duplicate).
	Discarded(err error)
}

type nopObserver struct{}

func (nopObserver) RTT(time.Duration) {}
func (nopObserver) Probe(bool)        {}
func (nopObserver) Discarded(error)   {}

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
	// StallAfter: the connection fails when bytes waiting for the socket make no progress for this
	// long (the peer stopped reading, or the link is blackholed and the send buffer is full), so its
	// requests move elsewhere at once. Default 500ms.
	StallAfter time.Duration
	// Quarantine keeps the identifier of a timed-out request out of use so a late reply cannot be
	// taken for the answer to a newer request. Default 30s.
	Quarantine time.Duration
	// MaxQueue bounds the requests waiting for a free identifier. Default 65536.
	MaxQueue int
	// Now is the clock of deadlines and the watchdog; its readings must carry the monotonic clock
	// (time.Now's do), so a wall-clock step neither freezes nor kills a connection.
	Now    func() time.Time
	Logger *slog.Logger
	// Observer, if set, sees round-trip times, probe answers and discarded replies.
	Observer Observer
	// Cork, if set, holds requests written during a burst until its end, and makes each run of
	// replies read in one go a burst (see sockio).
	Cork *sockio.Cork
	// Requests, if set, receives the CoA-Request and Disconnect-Request the server sends on this
	// connection (draft-ietf-radext-reverse-coa: dynamic authorization over the connection the
	// client opened), with a ReplyFunc that queues the answer on the same connection. It runs on
	// the read loop and must not block. Unset, such packets are discarded like stray replies.
	Requests func(p packet.Packet, reply ReplyFunc)
	// RADIUS11 makes the connection speak RADIUS/1.1 (RFC 9765) when it is not a TLS connection
	// (tests over net.Pipe); a TLS connection speaks it when its handshake negotiated ALPN
	// "radius/1.1".
	RADIUS11 bool
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
	if o.StallAfter <= 0 {
		o.StallAfter = 500 * time.Millisecond
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
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// A slot is one RADIUS identifier. A building slot belongs to the goroutine building its packet,
// which alone completes or sends it. Whoever changes a busy slot away from slotBusy under c.mu
// owns its handler and is the only one to call it (after unlocking).
type slot struct {
	state    uint8
	probe    bool
	bad      bool                 // a reply failed verification; the request still waits for a genuine one
	sent     time.Time            // when it was written (monotonic)
	deadline time.Time            // zero: none
	until    time.Time            // quarantine end
	auth     [packet.AuthLen]byte // the classic request's authenticator, to verify or convert its reply
	token    uint32               // RADIUS/1.1: the request's Token
	native   bool                 // RADIUS/1.1: built by a native BuildFunc; its handler gets the 1.1 reply
	h        Handler
}

const (
	slotFree        = iota
	slotBuilding    // taken by a request whose packet is being built; nothing sent yet
	slotBusy        // sent, waiting for its reply
	slotQuarantined // timed out; a late reply must not match a newer request
)

type waiter struct {
	build    builds
	deadline time.Time
	h        Handler
}

// builds are the encoders of one request: classic, and optionally native RADIUS/1.1.
type builds struct {
	classic BuildFunc
	native  BuildFunc // nil: a RADIUS/1.1 connection converts what classic builds
}

func (b builds) none() bool { return b.classic == nil && b.native == nil }

// idRing hands out free identifiers least recently used first, so a late duplicate reply is
// unlikely to find its identifier already carrying the next request.
type idRing struct {
	ids  [256]uint8
	head int
	n    int
}

func (r *idRing) push(id uint8) { r.ids[(r.head+r.n)%256] = id; r.n++ }

func (r *idRing) pop() (uint8, bool) {
	if r.n == 0 {
		return 0, false
	}
	id := r.ids[r.head]
	r.head = (r.head + 1) % 256
	r.n--
	return id, true
}

// Conn is a client RadSec connection carrying up to 256 outstanding requests, one per RADIUS
// identifier; further requests wait in FIFO order for an identifier to free up, so a burst is never
// dropped for lack of identifiers (unlike radsecproxy issues #74/#113).
//
// Writes never block the caller: packets are sealed into a bounded per-connection buffer and
// written without waiting; a writer goroutine drains what the kernel did not take, and the
// connection fails (ErrStalled) when that makes no progress for StallAfter.
type Conn struct {
	nc    net.Conn
	opts  ConnOptions
	maKey *packet.MAKey // opts.Secret's key schedule, to check replies' Message-Authenticator
	w     *frameWriter
	epoch time.Time // lastRead counts from here, on the monotonic clock

	mu       sync.Mutex
	slots    [256]slot
	free     idRing
	queue    []waiter
	closed   bool
	closeErr error
	retryErr error // what pending requests fail with once closed
	probing  bool
	builders sync.WaitGroup // goroutines building a packet on a reserved identifier

	v11      bool   // RADIUS/1.1 (RFC 9765): Token matching, nothing signed, attributes in the clear
	tokenSeq uint32 // RADIUS/1.1: the high 24 bits of the next Token; guarded by mu

	lastRead  atomic.Int64 // time.Duration since epoch
	inflight  atomic.Int32 // slots building or busy
	done      chan struct{}
	closeOnce sync.Once
}

// NewConn wraps an established (TLS) connection. Call Run to start it.
func NewConn(nc net.Conn, o ConnOptions) *Conn {
	o.setDefaults()
	c := &Conn{nc: nc, opts: o, maKey: packet.NewMAKey(o.Secret), done: make(chan struct{}), epoch: o.Now()}
	c.w = newFrameWriter(nc, o.StallAfter, o.Cork)
	c.v11 = o.RADIUS11
	if tc, ok := nc.(*tls.Conn); ok {
		c.v11 = Is11(tc.ConnectionState())
	}
	if c.v11 {
		// RFC 9765, "Sending Packets": a per-connection counter started at a random value.
		var b [4]byte
		rand.Read(b[:])
		c.tokenSeq = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	}
	for i := range 256 {
		c.free.push(uint8(i))
	}
	return c
}

// ConnectionState is the TLS state of the connection (ok false when it is not TLS, as a test's
// net.Pipe): version, cipher suite, key exchange group (CurveID), ALPN.
func (c *Conn) ConnectionState() (tls.ConnectionState, bool) {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return tc.ConnectionState(), true
}

// RADIUS11 reports whether the connection speaks RADIUS/1.1 (RFC 9765).
func (c *Conn) RADIUS11() bool { return c.v11 }

// Inflight is the number of requests sent (or being built) and not yet answered.
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
// closed, queue full); h is not called then. Otherwise h is called exactly once, possibly before
// Exchange returns (a request that cannot be built fails with ErrBuild).
func (c *Conn) Exchange(build BuildFunc, deadline time.Time, h Handler) error {
	return c.exchange(builds{classic: build}, deadline, h)
}

// ExchangeNative is Exchange with a second encoder for a RADIUS/1.1 connection: build11 writes
// the request in RADIUS/1.1 form (no Message-Authenticator, hidden attributes in the clear; the
// connection writes the Token over the header, so the identifier it gets is only its slot), and h
// then receives the reply in RADIUS/1.1 form, unverified by any secret (TLS protects it). On a
// historic connection build is used and h gets the verified classic reply, as with Exchange.
// Without build11, a RADIUS/1.1 connection converts what build writes and hands h a classic reply
// signed with ConnOptions.Secret, so callers that know only classic RADIUS work unchanged.
func (c *Conn) ExchangeNative(build, build11 BuildFunc, deadline time.Time, h Handler) error {
	return c.exchange(builds{classic: build, native: build11}, deadline, h)
}

func (c *Conn) exchange(build builds, deadline time.Time, h Handler) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	id, ok := c.free.pop()
	if !ok {
		if len(c.queue) >= c.opts.MaxQueue {
			c.mu.Unlock()
			return ErrBusy
		}
		c.queue = append(c.queue, waiter{build: build, deadline: deadline, h: h})
		c.mu.Unlock()
		return nil
	}
	c.reserveLocked(id, deadline, h, false)
	c.mu.Unlock()
	c.send(id, build)
	return nil
}

// reserveLocked gives identifier id to a request about to be built.
func (c *Conn) reserveLocked(id uint8, deadline time.Time, h Handler, probe bool) {
	c.slots[id] = slot{state: slotBuilding, probe: probe, deadline: deadline, h: h}
	c.inflight.Add(1)
	c.builders.Add(1)
	if probe {
		c.probing = true
	}
}

// releaseLocked frees identifier id, whose owner was just claimed, or hands it straight to the
// oldest waiter; then it returns that waiter's build, which the caller must pass to send once
// unlocked.
func (c *Conn) releaseLocked(id uint8) builds {
	if c.slots[id].probe {
		c.probing = false
	}
	c.slots[id] = slot{}
	if c.closed || len(c.queue) == 0 {
		c.free.push(id)
		return builds{}
	}
	w := c.queue[0]
	c.queue[0] = waiter{}
	c.queue = c.queue[1:]
	c.reserveLocked(id, w.deadline, w.h, false)
	return w.build
}

// claimLocked takes the handler of a building or busy slot and frees the slot.
func (c *Conn) claimLocked(id uint8) (h Handler, probe bool, sent time.Time, next builds) {
	s := &c.slots[id]
	h, probe, sent = s.h, s.probe, s.sent
	c.inflight.Add(-1)
	return h, probe, sent, c.releaseLocked(id)
}

// send builds the request reserved on identifier id and queues it for the socket. When the build
// fails, the request's handler gets ErrBuild and the identifier goes to the next waiter, whose
// request is then sent the same way.
func (c *Conn) send(id uint8, build builds) {
	for !build.none() {
		native := c.v11 && build.native != nil
		var p packet.Packet
		var err error
		switch {
		case native:
			p, err = build.native(nil, id)
		case build.classic != nil:
			p, err = build.classic(nil, id)
		default:
			err = errors.New("radsec: no classic encoder for a historic RADIUS/TLS connection")
		}
		var classicAuth [packet.AuthLen]byte
		if err == nil && c.v11 {
			if !native {
				// A caller that knows only classic RADIUS: its packet is converted, and the
				// reply converted back over this authenticator (dispatch).
				copy(classicAuth[:], p.Authenticator())
				p, err = packet.ForwardRequestAdding(nil, p, &packet.Rekey{FromSecret: c.opts.Secret, ToClear: true}, 0, nil, nil, nil)
			} else if len(p) < packet.HeaderLen {
				err = fmt.Errorf("radsec: RADIUS/1.1 request of %d bytes", len(p))
			}
		}
		c.mu.Lock()
		s := &c.slots[id]
		if c.closed || err != nil {
			// The connection failed while the packet was built (fail leaves building slots to
			// their builder), or the build failed: complete it here.
			if err != nil {
				err = fmt.Errorf("%w: %w", ErrBuild, err)
			} else {
				err = c.retryErr
			}
			var h Handler
			h, _, _, build = c.claimLocked(id)
			c.mu.Unlock()
			c.builders.Done()
			if h != nil {
				h(nil, err)
			}
			continue
		}
		s.state = slotBusy
		s.sent = c.opts.Now()
		if c.v11 {
			// RFC 9765, "The Token Field": a new Token for every packet; its low octet names the
			// slot, the rest counts, so a late reply to a slot's previous request matches nothing.
			s.token = c.tokenSeq<<8 | uint32(id)
			c.tokenSeq++
			s.native = native
			s.auth = classicAuth
			packet.SetToken(p, s.token)
		} else {
			copy(s.auth[:], p.Authenticator())
		}
		c.mu.Unlock()
		c.builders.Done()
		if err := c.w.write(p); err != nil {
			c.fail(err)
		}
		return
	}
}

// Run reads replies, drains the write buffer and runs the watchdog until ctx is cancelled or the
// connection fails. It returns nil on cancel and the failure otherwise, after every pending
// request's Handler has been called and its goroutines have returned.
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
	c.builders.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return c.Err()
}

// Close ends the connection; pending requests fail with ErrClosed.
func (c *Conn) Close() { c.fail(ErrClosed) }

// fail closes the connection once and completes every pending and queued request with err (as
// ErrConnDead unless it is ErrClosed, so the request may be retried elsewhere); requests whose
// packet is being built are completed by their builder. It aborts the socket without waiting: a
// TLS close_notify on a dead link would wait for a send buffer that never drains.
func (c *Conn) fail(err error) {
	c.closeOnce.Do(func() {
		retry := err
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrConnDead) {
			retry = fmt.Errorf("%w: %w", ErrConnDead, err)
		}
		var hs []Handler
		c.mu.Lock()
		c.closed = true
		c.closeErr = err
		c.retryErr = retry
		for i := range c.slots {
			s := &c.slots[i]
			switch s.state {
			case slotBuilding:
				continue
			case slotBusy:
				if s.h != nil {
					hs = append(hs, s.h)
				}
				c.inflight.Add(-1)
			}
			*s = slot{}
		}
		for _, w := range c.queue {
			hs = append(hs, w.h)
		}
		c.queue = nil
		c.mu.Unlock()
		c.w.stop()
		c.w.abort()
		close(c.done)
		for _, h := range hs {
			h(nil, retry)
		}
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
		now := c.opts.Now()
		c.lastRead.Store(int64(now.Sub(c.epoch)))
		c.dispatch(p, now)
	}
}

// dispatch completes the request a reply answers. The reply is verified and the slot claimed under
// the one lock acquisition that finds it, so the watchdog and fail() cannot complete it too.
func (c *Conn) dispatch(p packet.Packet, now time.Time) {
	if code := p.Code(); code == packet.CodeCoARequest || code == packet.CodeDisconnectRequest {
		// A request from the server, not a reply: it claims no slot, so the identifiers of our
		// own requests are untouched (the server's identifier space is its own).
		if c.opts.Requests == nil {
			c.opts.Observer.Discarded(fmt.Errorf("%w: %v from the server and no dynamic authorization handler", ErrBadReply, code))
			return
		}
		if c.v11 {
			c.serverRequest11(p)
			return
		}
		c.opts.Requests(p, c.replyFunc)
		return
	}
	if c.v11 {
		c.dispatch11(p, now)
		return
	}
	id := p.ID()
	c.mu.Lock()
	s := &c.slots[id]
	if s.state != slotBusy {
		c.mu.Unlock()
		c.opts.Observer.Discarded(fmt.Errorf("%w: no request outstanding on id %d", ErrBadReply, id))
		return
	}
	// RFC 6614 §2.3 keeps the RADIUS authenticators. A reply that does not verify is discarded
	// (RFC 2865 §3: silently): it neither fails its request, which a genuine reply may still
	// answer, nor the connection.
	var ma packet.MAStatus
	if s.probe {
		ma = packet.CheckStatusReplyMA(p, s.auth[:], c.opts.Secret)
	} else {
		ma = packet.CheckResponseMAKey(p, s.auth[:], c.maKey)
	}
	ok := ma != packet.MAInvalid && packet.CheckResponseAuthenticator(p, s.auth[:], c.opts.Secret)
	if !ok && !s.probe {
		s.bad = true
		c.mu.Unlock()
		c.opts.Observer.Discarded(fmt.Errorf("%w: authenticator check failed on id %d", ErrBadReply, id))
		return
	}
	h, probe, sent, next := c.claimLocked(id)
	c.mu.Unlock()
	c.send(id, next)
	if probe {
		c.opts.Observer.Probe(ok)
		return
	}
	c.opts.Observer.RTT(now.Sub(sent))
	h(p, nil)
}

// dispatch11 completes the request a RADIUS/1.1 reply answers, found by its Token alone (RFC
// 9765, "Receiving Packets": Reserved-1 is not looked at). TLS authenticates the reply; there is no
// authenticator to check.
func (c *Conn) dispatch11(p packet.Packet, now time.Time) {
	token := p.Token()
	id := uint8(token)
	c.mu.Lock()
	s := &c.slots[id]
	if s.state != slotBusy || s.token != token {
		c.mu.Unlock()
		c.opts.Observer.Discarded(fmt.Errorf("%w: no request outstanding with token %#08x", ErrBadReply, token))
		return
	}
	native, auth := s.native, s.auth
	h, probe, sent, next := c.claimLocked(id)
	c.mu.Unlock()
	c.send(id, next)
	if probe {
		c.opts.Observer.Probe(true)
		return
	}
	c.opts.Observer.RTT(now.Sub(sent))
	if native {
		h(p, nil)
		return
	}
	// The caller built a classic request: give it the classic reply it can verify.
	resp, err := packet.ForwardResponseTo(nil, p, &packet.Rekey{FromClear: true, ToSecret: c.opts.Secret}, id, auth[:], false)
	if err != nil {
		h(nil, fmt.Errorf("%w: %w", ErrBadReply, err))
		return
	}
	h(resp, nil)
}

// serverRequest11 hands a CoA-Request or Disconnect-Request that came on a RADIUS/1.1 connection
// to ConnOptions.Requests in classic form (signed with ConnOptions.Secret), and turns the classic
// answer back into RADIUS/1.1 with the request's Token (RFC 9765, "Sending Packets": a response
// carries its request's Token).
func (c *Conn) serverRequest11(p packet.Packet) {
	token := p.Token()
	classic, err := packet.ForwardRequestAdding(nil, p, &packet.Rekey{FromClear: true, ToSecret: c.opts.Secret}, uint8(token), nil, nil, nil)
	if err != nil {
		c.opts.Observer.Discarded(fmt.Errorf("%w: RADIUS/1.1 %v: %w", ErrBadReply, p.Code(), err))
		return
	}
	reqAuth := classic.Authenticator()
	c.opts.Requests(classic, func(resp []byte) error {
		n, err := packet.FrameLen(resp)
		if err != nil || n > len(resp) {
			return fmt.Errorf("radsec: response is not a RADIUS packet: %d bytes", len(resp))
		}
		out, err := packet.ForwardResponseTo(nil, packet.Packet(resp[:n]), &packet.Rekey{FromSecret: c.opts.Secret, FromAuth: reqAuth, ToClear: true}, 0, nil, false)
		if err != nil {
			return fmt.Errorf("radsec: RADIUS/1.1 response: %w", err)
		}
		packet.SetToken(out, token)
		return c.replyFunc(out)
	})
}

// replyFunc queues an answer to a server's request on this connection without blocking.
func (c *Conn) replyFunc(resp []byte) error {
	n, err := packet.FrameLen(resp)
	if err != nil || n > len(resp) {
		return fmt.Errorf("radsec: response is not a RADIUS packet: %d bytes", len(resp))
	}
	if err := c.w.write(resp[:n]); err != nil {
		c.fail(err)
		return err
	}
	return nil
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
		c.check(c.opts.Now())
	}
}

type expiredReq struct {
	h   Handler
	err error
}

type handoff struct {
	id    uint8
	build builds
}

// check is one watchdog pass at time now (separate for tests).
func (c *Conn) check(now time.Time) {
	var expired []expiredReq
	var next []handoff
	// newestOld is the latest send time among requests unanswered for at least DeadAfter. If nothing
	// at all was received since it was sent, the peer has been silent for DeadAfter while it owed us
	// an answer: the connection is dead (a blackholed link sends no RST).
	var newestOld time.Time
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for i := range c.slots {
		s := &c.slots[i]
		switch s.state {
		case slotBusy:
			if now.Sub(s.sent) >= c.opts.DeadAfter && s.sent.After(newestOld) {
				newestOld = s.sent
			}
			if !s.probe && !s.deadline.IsZero() && !now.Before(s.deadline) {
				err := ErrTimeout
				if s.bad {
					err = fmt.Errorf("%w: no reply verified before the deadline", ErrBadReply)
				}
				expired = append(expired, expiredReq{s.h, err})
				s.h = nil
				s.state = slotQuarantined
				s.until = now.Add(c.opts.Quarantine)
				c.inflight.Add(-1)
			}
		case slotQuarantined:
			if now.Sub(s.sent) >= c.opts.DeadAfter && s.sent.After(newestOld) {
				newestOld = s.sent
			}
			if !now.Before(s.until) {
				if b := c.releaseLocked(uint8(i)); !b.none() {
					next = append(next, handoff{uint8(i), b})
				}
			}
		}
	}
	// Queued requests can expire before they ever get an identifier.
	kept := c.queue[:0]
	for _, w := range c.queue {
		if !w.deadline.IsZero() && !now.Before(w.deadline) {
			expired = append(expired, expiredReq{w.h, ErrTimeout})
			continue
		}
		kept = append(kept, w)
	}
	clear(c.queue[len(kept):])
	c.queue = kept
	lastRead := time.Duration(c.lastRead.Load())
	probeID, probe := uint8(0), false
	if !c.probing && now.Sub(c.epoch)-lastRead >= c.opts.StatusInterval {
		if probeID, probe = c.free.pop(); probe {
			c.reserveLocked(probeID, time.Time{}, nil, true)
		}
	}
	c.mu.Unlock()

	for _, e := range expired {
		e.h(nil, e.err)
	}
	for _, n := range next {
		c.send(n.id, n.build)
	}
	if !newestOld.IsZero() && lastRead <= newestOld.Sub(c.epoch) {
		c.fail(fmt.Errorf("%w: no reply for %v", ErrConnDead, now.Sub(newestOld).Round(time.Millisecond)))
		// The probe reserved above still belongs to this goroutine: send completes it (closed).
	}
	if probe {
		c.send(probeID, builds{classic: func(dst []byte, id uint8) (packet.Packet, error) {
			return StatusServer(dst, id, c.opts.Secret)
		}})
	}
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
