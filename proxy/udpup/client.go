// Package udpup owns RADIUS over UDP (RFC 2865, RFC 2866) towards one home server, the transport a
// national roaming operator's servers speak (eduroam): a pool of source ports so that more than 256
// requests can be outstanding, retransmission with the same identifier and authenticator
// (RFC 5080 §2.2.1), a Status-Server watchdog (RFC 5997), and replies that must carry a valid
// Message-Authenticator (BlastRADIUS, CVE-2024-3596) unless told otherwise.
//
// It moves packets; the caller (proxy.Pool) builds them with the server's secret (re-keying) and
// turns replies back into answers for the NAS.
package udpup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
)

// Errors a Handler is called with. ErrDead and ErrClosed mean the request never got an answer from
// this server and may go to another one; the others end it.
var (
	ErrTimeout  = errors.New("udpup: no reply before the deadline")
	ErrDead     = errors.New("udpup: server stopped answering")
	ErrClosed   = errors.New("udpup: client closed")
	ErrBusy     = errors.New("udpup: every identifier of every source port is in use")
	ErrBuild    = errors.New("udpup: request could not be built")
	ErrBadReply = errors.New("udpup: no reply verified")
)

// BuildFunc writes the request into dst with identifier id (its shape is radsec.BuildFunc's).
type BuildFunc func(dst []byte, id uint8) (packet.Packet, error)

// Handler receives the verified reply, or why there is none. It is called exactly once per request
// Exchange accepted, on the client's reader or watchdog goroutine, and must not block.
type Handler func(resp packet.Packet, err error)

// Observer hears how the server fares. It must not block.
type Observer interface {
	Up()
	Down(err error)
	RTT(d time.Duration)
	Probe(ok bool)
	Discarded(err error)
}

type nopObserver struct{}

func (nopObserver) Up()                 {}
func (nopObserver) Down(error)          {}
func (nopObserver) RTT(time.Duration)   {}
func (nopObserver) Probe(bool)          {}
func (nopObserver) Discarded(err error) {}

// Options configure a client. Zero values take the documented defaults.
type Options struct {
	Server netip.AddrPort // the home server's address and port (1812 auth, 1813 accounting)
	Secret []byte         // the shared secret of this server
	// Source is the local address requests leave from; zero lets the kernel choose by route.
	Source netip.Addr
	// SourcePorts is how many UDP sockets (source ports) the client spreads requests over; each
	// carries at most 256 outstanding requests (the identifier is one octet). Default 4.
	SourcePorts int
	// RetransmitAfter is how long the client waits for a reply before it sends the same packet
	// again (same identifier and authenticator, RFC 5080 §2.2.1). A retransmission the NAS makes
	// is mapped onto one too (Retransmit). Default 2s.
	RetransmitAfter time.Duration
	// MaxTransmissions caps the transmissions of one request, the first included. Default 3.
	MaxTransmissions int
	// StatusInterval: a server from which nothing was received for this long gets a Status-Server.
	// Default 1s.
	StatusInterval time.Duration
	// DeadAfter: the server is declared down when a request or probe sent this long ago is
	// unanswered and nothing at all was received since. Default 2s.
	DeadAfter time.Duration
	// AllowMissingMA accepts Access-Accept, -Reject and -Challenge without Message-Authenticator.
	// Default false: such a reply is discarded (BlastRADIUS).
	AllowMissingMA bool
	Observer       Observer
	Logger         *slog.Logger
	Now            func() time.Time
}

// Defaults of Options.
const (
	DefaultSourcePorts      = 4
	DefaultRetransmitAfter  = 2 * time.Second
	DefaultMaxTransmissions = 3
	DefaultStatusInterval   = time.Second
	DefaultDeadAfter        = 2 * time.Second
	maxSourcePorts          = 64
)

// Validate checks the options before a socket is opened.
func (o *Options) Validate() error {
	if !o.Server.IsValid() || o.Server.Port() == 0 {
		return errors.New("udpup: no server address")
	}
	if len(o.Secret) == 0 {
		return errors.New("udpup: no shared secret")
	}
	if o.SourcePorts < 0 || o.SourcePorts > maxSourcePorts {
		return fmt.Errorf("udpup: source_ports %d out of range 1-%d", o.SourcePorts, maxSourcePorts)
	}
	if o.MaxTransmissions < 0 || o.MaxTransmissions > 10 {
		return fmt.Errorf("udpup: max_transmissions %d out of range 1-10", o.MaxTransmissions)
	}
	if o.RetransmitAfter < 0 || o.StatusInterval < 0 || o.DeadAfter < 0 {
		return errors.New("udpup: negative duration")
	}
	if o.Source.IsValid() && o.Source.Is4() != o.Server.Addr().Unmap().Is4() {
		return fmt.Errorf("udpup: source address %v and server %v are of different families", o.Source, o.Server.Addr())
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.SourcePorts == 0 {
		o.SourcePorts = DefaultSourcePorts
	}
	if o.RetransmitAfter == 0 {
		o.RetransmitAfter = DefaultRetransmitAfter
	}
	if o.MaxTransmissions == 0 {
		o.MaxTransmissions = DefaultMaxTransmissions
	}
	if o.StatusInterval == 0 {
		o.StatusInterval = DefaultStatusInterval
	}
	if o.DeadAfter == 0 {
		o.DeadAfter = DefaultDeadAfter
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// slot is one identifier of one source port.
type slot struct {
	busy     bool
	probe    bool
	bad      bool // a reply failed verification; the request may still get a genuine one
	h        Handler
	pkt      []byte
	auth     [packet.AuthLen]byte
	first    time.Time
	last     time.Time
	deadline time.Time
	sent     int
	gen      uint64
}

type sock struct {
	conn  *net.UDPConn
	slots [256]slot
	free  []uint8 // FIFO: least recently used identifier first
}

// Sent names one accepted request, for Retransmit.
type Sent struct {
	sock int
	id   uint8
	gen  uint64
}

// Client talks RADIUS over UDP to one server. Run owns its sockets and goroutines.
type Client struct {
	opts Options

	mu       sync.Mutex
	socks    []*sock
	next     int
	gen      uint64
	up       bool
	probing  bool
	closed   bool
	lastRecv time.Time
	inflight atomic.Int64
}

// New checks o and creates the client; Run opens its sockets.
func New(o Options) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.setDefaults()
	return &Client{opts: o}, nil
}

// Up reports whether the server answers.
func (c *Client) Up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// Inflight is the number of requests waiting for a reply.
func (c *Client) Inflight() int { return int(c.inflight.Load()) }

// Run opens the source ports, probes the server and serves until ctx ends; then every request
// still waiting gets ErrClosed and Run returns nil once its goroutines have exited. It returns an
// error only when the sockets cannot be opened.
func (c *Client) Run(ctx context.Context) error {
	raddr := net.UDPAddrFromAddrPort(c.opts.Server)
	var laddr *net.UDPAddr
	if c.opts.Source.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.opts.Source, 0))
	}
	socks := make([]*sock, 0, c.opts.SourcePorts)
	for range c.opts.SourcePorts {
		conn, err := net.DialUDP("udp", laddr, raddr)
		if err != nil {
			for _, s := range socks {
				s.conn.Close()
			}
			return fmt.Errorf("udpup: open source port for %v: %w", c.opts.Server, err)
		}
		s := &sock{conn: conn, free: make([]uint8, 256)}
		for i := range s.free {
			s.free[i] = uint8(i)
		}
		socks = append(socks, s)
	}
	c.mu.Lock()
	c.socks = socks
	c.lastRecv = c.opts.Now()
	c.mu.Unlock()

	var wg sync.WaitGroup
	for i, s := range socks {
		wg.Add(1)
		go func() { defer wg.Done(); c.read(i, s) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.watchdog(ctx) }()
	c.probe(c.opts.Now())
	<-ctx.Done()
	c.shut()
	wg.Wait()
	return nil
}

// shut closes the sockets and ends every request still waiting.
func (c *Client) shut() {
	var hs []Handler
	c.mu.Lock()
	c.closed = true
	for _, s := range c.socks {
		s.conn.Close()
		for i := range s.slots {
			sl := &s.slots[i]
			if sl.busy && !sl.probe {
				hs = append(hs, sl.h)
				c.inflight.Add(-1)
			}
			*sl = slot{}
		}
	}
	c.mu.Unlock()
	for _, h := range hs {
		h(nil, ErrClosed)
	}
}

// Exchange sends the request build writes and calls h once with its verified reply or why there
// is none. An error return means h will not be called: the server is down, the client closed, or
// no identifier is free on any source port.
func (c *Client) Exchange(build BuildFunc, deadline time.Time, h Handler) (Sent, error) {
	c.mu.Lock()
	switch {
	case c.closed || c.socks == nil:
		c.mu.Unlock()
		return Sent{}, ErrClosed
	case !c.up:
		c.mu.Unlock()
		return Sent{}, ErrDead
	}
	si, id, ok := c.reserveLocked()
	if !ok {
		c.mu.Unlock()
		return Sent{}, ErrBusy
	}
	s := c.socks[si]
	sl := &s.slots[id]
	c.gen++
	gen := c.gen
	*sl = slot{busy: true, h: h, deadline: deadline, gen: gen}
	c.inflight.Add(1)
	c.mu.Unlock()

	p, err := build(make([]byte, 0, 4096), id)
	now := c.opts.Now()
	c.mu.Lock()
	if !sl.busy || sl.gen != gen {
		// shut() or the down verdict ended it (and called h) while it was being built.
		c.mu.Unlock()
		return Sent{}, nil
	}
	if err != nil {
		c.releaseLocked(s, id)
		c.mu.Unlock()
		h(nil, fmt.Errorf("%w: %w", ErrBuild, err))
		return Sent{}, nil
	}
	sl.pkt = p
	copy(sl.auth[:], p.Authenticator())
	sl.first, sl.last, sl.sent = now, now, 1
	sent := Sent{sock: si, id: id, gen: sl.gen}
	c.mu.Unlock()
	c.write(s, p)
	return sent, nil
}

// Retransmit sends an outstanding request again now, for a retransmission from the NAS
// (RFC 5080 §2.2.1: same identifier, same authenticator), unless it was answered, its
// transmissions are used up or the last one left less than half RetransmitAfter ago.
func (c *Client) Retransmit(r Sent) {
	now := c.opts.Now()
	c.mu.Lock()
	if r.sock >= len(c.socks) {
		c.mu.Unlock()
		return
	}
	s := c.socks[r.sock]
	sl := &s.slots[r.id]
	if !sl.busy || sl.gen != r.gen || sl.pkt == nil || sl.sent >= c.opts.MaxTransmissions ||
		now.Sub(sl.last) < c.opts.RetransmitAfter/2 {
		c.mu.Unlock()
		return
	}
	sl.sent++
	sl.last = now
	p := sl.pkt
	c.mu.Unlock()
	c.write(s, p)
}

// reserveLocked takes a free identifier, visiting the source ports round-robin.
func (c *Client) reserveLocked() (int, uint8, bool) {
	for range c.socks {
		i := c.next % len(c.socks)
		c.next++
		s := c.socks[i]
		if len(s.free) > 0 {
			id := s.free[0]
			s.free = s.free[1:]
			return i, id, true
		}
	}
	return 0, 0, false
}

func (c *Client) releaseLocked(s *sock, id uint8) {
	sl := &s.slots[id]
	if sl.busy && !sl.probe {
		c.inflight.Add(-1)
	}
	*sl = slot{}
	s.free = append(s.free, id)
}

func (c *Client) write(s *sock, p []byte) {
	if _, err := s.conn.Write(p); err != nil {
		// A connected UDP socket reports an ICMP port unreachable on the next call; the watchdog
		// notices the silence either way.
		c.opts.Logger.Debug("udp upstream write failed", "peer", c.opts.Server, "err", err)
	}
}

// read matches replies to requests on one source port.
func (c *Client) read(si int, s *sock) {
	buf := make([]byte, packet.MaxLen+1)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an earlier ICMP error: keep reading.
			continue
		}
		p, err := packet.Parse(buf[:n])
		if err != nil {
			c.opts.Observer.Discarded(fmt.Errorf("%w: %w", ErrBadReply, err))
			continue
		}
		c.dispatch(s, append(packet.Packet(nil), p...))
	}
}

func (c *Client) dispatch(s *sock, p packet.Packet) {
	now := c.opts.Now()
	id := p.ID()
	c.mu.Lock()
	sl := &s.slots[id]
	if !sl.busy || sl.pkt == nil {
		c.mu.Unlock()
		c.opts.Observer.Discarded(fmt.Errorf("%w: no request outstanding on id %d", ErrBadReply, id))
		return
	}
	checkMA := packet.CheckResponseMA
	if sl.probe {
		checkMA = packet.CheckStatusReplyMA
	}
	var reason string
	switch ma := checkMA(p, sl.auth[:], c.opts.Secret); {
	case !packet.CheckResponseAuthenticator(p, sl.auth[:], c.opts.Secret):
		reason = "response authenticator does not verify"
	case ma == packet.MAInvalid:
		reason = "Message-Authenticator does not verify"
	case ma == packet.MAAbsent && !c.opts.AllowMissingMA && !sl.probe && p.Code() != packet.CodeAccountingResponse:
		// BlastRADIUS (CVE-2024-3596): without Message-Authenticator a forged Access-Accept can be
		// made from a Reject by an MD5 chosen-prefix collision. A reply to Status-Server grants
		// nothing, and FreeRADIUS 3.2 sends it without one.
		reason = "no Message-Authenticator"
	}
	if reason != "" {
		sl.bad = true
		c.mu.Unlock()
		c.opts.Observer.Discarded(fmt.Errorf("%w: id %d: %s", ErrBadReply, id, reason))
		return
	}
	// Any verified reply shows the server is alive.
	c.lastRecv = now
	wasUp := c.up
	probe, h, sent := sl.probe, sl.h, sl.first
	if probe {
		c.probing = false
		c.up = true
	}
	c.releaseLocked(s, id)
	c.mu.Unlock()
	if probe {
		c.opts.Observer.Probe(true)
		if !wasUp {
			c.opts.Logger.Info("udp upstream answers", "peer", c.opts.Server)
			c.opts.Observer.Up()
		}
		return
	}
	c.opts.Observer.RTT(now.Sub(sent))
	h(p, nil)
}

func (c *Client) watchdog(ctx context.Context) {
	tick := min(c.opts.StatusInterval/4, c.opts.RetransmitAfter/4, 250*time.Millisecond)
	t := time.NewTicker(max(tick, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.check(c.opts.Now())
	}
}

type expired struct {
	h   Handler
	err error
}

type resend struct {
	s *sock
	p []byte
}

// check is one watchdog pass: deadlines, retransmissions, probes, and the down verdict.
func (c *Client) check(now time.Time) {
	var ends []expired
	var again []resend
	var newestOld time.Time
	probeLost := false
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for _, s := range c.socks {
		for i := range s.slots {
			sl := &s.slots[i]
			if !sl.busy || sl.pkt == nil {
				continue
			}
			if now.Sub(sl.last) >= c.opts.DeadAfter && sl.last.After(newestOld) {
				newestOld = sl.last
			}
			switch {
			case sl.probe && now.Sub(sl.first) >= c.opts.DeadAfter:
				c.probing = false
				probeLost = true
				c.releaseLocked(s, uint8(i))
			case !sl.probe && !now.Before(sl.deadline):
				err := ErrTimeout
				if sl.bad {
					err = ErrBadReply
				}
				ends = append(ends, expired{sl.h, err})
				c.releaseLocked(s, uint8(i))
			case !sl.probe && sl.sent < c.opts.MaxTransmissions && now.Sub(sl.last) >= c.opts.RetransmitAfter:
				sl.sent++
				sl.last = now
				again = append(again, resend{s, sl.pkt})
			}
		}
	}
	var downErr error
	if c.up && !newestOld.IsZero() && !c.lastRecv.After(newestOld) {
		downErr = fmt.Errorf("%w: no reply for %v", ErrDead, now.Sub(newestOld).Round(time.Millisecond))
		c.up = false
		// Every request still waiting goes elsewhere: the pool re-sends it to the next upstream
		// while its budget lasts.
		for _, s := range c.socks {
			for i := range s.slots {
				sl := &s.slots[i]
				if sl.busy && !sl.probe {
					ends = append(ends, expired{sl.h, downErr})
					c.releaseLocked(s, uint8(i))
				}
			}
		}
	}
	doProbe := !c.probing && now.Sub(c.lastRecv) >= c.opts.StatusInterval
	c.mu.Unlock()

	for _, r := range again {
		c.write(r.s, r.p)
	}
	if downErr != nil {
		// Before the requests are handed back, so their retries see this server down.
		c.opts.Logger.Warn("udp upstream down", "peer", c.opts.Server, "err", downErr)
		c.opts.Observer.Down(downErr)
	}
	for _, e := range ends {
		e.h(nil, e.err)
	}
	if probeLost {
		c.opts.Observer.Probe(false)
	}
	if doProbe {
		c.probe(now)
	}
}

// probe sends a Status-Server (RFC 5997 §3: Message-Authenticator mandatory).
func (c *Client) probe(now time.Time) {
	c.mu.Lock()
	if c.closed || c.probing {
		c.mu.Unlock()
		return
	}
	si, id, ok := c.reserveLocked()
	if !ok {
		c.mu.Unlock()
		return
	}
	s := c.socks[si]
	var auth [packet.AuthLen]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeStatusServer, id, auth[:])
	b.AddMA()
	b.AddString(packet.AttrNASIdentifier, "mxedge")
	p, err := b.Finish(c.opts.Secret, nil)
	if err != nil {
		s.free = append(s.free, id)
		c.mu.Unlock()
		return
	}
	c.probing = true
	s.slots[id] = slot{busy: true, probe: true, pkt: p, auth: auth, first: now, last: now, sent: 1}
	c.mu.Unlock()
	c.write(s, p)
}
