package dynauth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// Attributes the relay reads that proxy/packet does not name.
const (
	attrFramedIPAddress uint8 = 8
	attrEventTimestamp  uint8 = 55
	attrErrorCause      uint8 = 101
	attrExtended1       uint8 = 241 // RFC 6929 Extended-Type-1
	extOperatorNASID    uint8 = 8   // RFC 8559: Operator-NAS-Identifier is 241.8
)

// Relay relays Dynamic Authorization requests to NASes. Build it with New, bind it with Listen and
// run it with Run.
type Relay struct {
	opts   Options
	tables atomic.Pointer[tables] // swapped by SetTables on reload
	stats  Stats

	out   *net.UDPConn   // requests to NASes and their answers
	socks []*net.UDPConn // the Dynamic Authorization listener

	lastLog   [dropReasons]atomic.Int64 // unix nanos of the last drop line per reason
	originSeq atomic.Uint64             // tells the edge's own requests apart (Originate)

	mu      sync.Mutex
	pending map[pendKey]*pending
	ids     map[netip.AddrPort]*idSpace
	dups    map[dupKey]*dupEntry
}

// maxTracked bounds the requests the duplicate cache holds (in flight and answered within
// DuplicateWindow), and so what waits on NASes: beyond it a request gets NAK 506 at once.
const maxTracked = 1 << 16

// tables are the clients and NASes of one configuration. Immutable.
type tables struct {
	nases   *proxy.ClientTable
	byName  map[string]*NAS
	clients *proxy.ClientTable
}

func newTables(clients []proxy.Client, nases []NAS) (*tables, error) {
	t := &tables{byName: map[string]*NAS{}}
	cl := make([]proxy.Client, 0, len(nases))
	for i := range nases {
		n := nases[i]
		if n.CoAPort == 0 {
			n.CoAPort = DefaultPort
		}
		t.byName[n.Name] = &n
		cl = append(cl, proxy.Client{Name: n.Name, Prefix: n.Prefix, Secret: n.Secret})
	}
	var err error
	if t.nases, err = proxy.NewClientTable(cl, nil); err != nil {
		return nil, fmt.Errorf("dynauth: NASes: %w", err)
	}
	if t.clients, err = proxy.NewClientTable(clients, nil); err != nil {
		return nil, fmt.Errorf("dynauth: clients: %w", err)
	}
	return t, nil
}

type pendKey struct {
	to netip.AddrPort
	id uint8
}

// inbound is a verified request and the way back to whoever sent it.
type inbound struct {
	from   string // requester's name for events
	key    dupKey
	p      packet.Packet // owned copy
	secret []byte
	reply  func(resp []byte) error
	done   func(Outcome) // the edge's own requests (Originate): told the outcome
}

type pending struct {
	in      inbound
	nas     *NAS
	route   string
	fwd     packet.Packet
	to      netip.AddrPort
	start   time.Time
	next    time.Time
	wait    time.Duration
	retries int
}

type dupKey struct {
	origin string // transport and source: "udp:ADDR" or "radsec:UPSTREAM#CONN"
	id     uint8
	auth   [packet.AuthLen]byte
}

type dupEntry struct {
	answer packet.Packet // nil while the request is being relayed
	until  time.Time
}

// idSpace hands out identifiers for requests to one NAS address.
type idSpace struct {
	used [256]bool
	n    int
	next uint8
}

func (s *idSpace) take() (uint8, bool) {
	for range 256 {
		id := s.next
		s.next++
		if !s.used[id] {
			s.used[id] = true
			s.n++
			return id, true
		}
	}
	return 0, false
}

func (s *idSpace) free(id uint8) {
	if s.used[id] {
		s.used[id] = false
		s.n--
	}
}

// New builds the relay from validated options; it binds nothing.
func New(o Options) (*Relay, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.setDefaults()
	r := &Relay{opts: o, pending: map[pendKey]*pending{},
		ids: map[netip.AddrPort]*idSpace{}, dups: map[dupKey]*dupEntry{}}
	t, err := newTables(o.Clients, o.NASes)
	if err != nil {
		return nil, err
	}
	r.tables.Store(t)
	return r, nil
}

// SetTables replaces the Dynamic Authorization clients and the NASes (a reload). Requests already
// sent to a NAS finish with the NAS they were sent to.
func (r *Relay) SetTables(clients []proxy.Client, nases []NAS) error {
	o := Options{Clients: clients, NASes: nases}
	if err := o.Validate(); err != nil {
		return err
	}
	t, err := newTables(clients, nases)
	if err != nil {
		return err
	}
	r.tables.Store(t)
	return nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() *Stats { return &r.stats }

// Listen binds the socket requests to NASes go out of and the Dynamic Authorization listener.
func (r *Relay) Listen() error {
	src, _ := netip.ParseAddrPort(r.opts.Source) // checked by Validate
	out, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(src))
	if err != nil {
		return fmt.Errorf("dynauth: bind %s: %w", r.opts.Source, err)
	}
	r.out = out
	for _, a := range r.opts.Listen {
		ap, _ := netip.ParseAddrPort(a)
		s, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			r.Close()
			return fmt.Errorf("dynauth: listen %s: %w", a, err)
		}
		r.socks = append(r.socks, s)
	}
	return nil
}

// Addrs are the bound addresses of the Dynamic Authorization listener.
func (r *Relay) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range r.socks {
		out = append(out, s.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// Close closes the sockets; Run then returns.
func (r *Relay) Close() {
	if r.out != nil {
		r.out.Close()
	}
	for _, s := range r.socks {
		s.Close()
	}
}

// Run reads the listener and the NASes' answers and retransmits until ctx ends. It returns nil on
// cancel, after its goroutines have exited. Requests still waiting for a NAS then get no answer;
// their requesters retransmit to whoever serves next.
func (r *Relay) Run(ctx context.Context) error {
	if r.out == nil {
		return errors.New("dynauth: Run before Listen")
	}
	var wg sync.WaitGroup
	for _, s := range r.socks {
		wg.Add(1)
		go func() { defer wg.Done(); r.readListener(s) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.readNASes() }()
	tick := r.opts.Timeout / 4
	tick = min(max(tick, 10*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			r.check(r.opts.Now())
		}
	}
	r.Close()
	wg.Wait()
	return nil
}

func (r *Relay) readListener(s *net.UDPConn) {
	buf := make([]byte, packet.MaxLen+1)
	for {
		n, src, err := s.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.acceptUDP(s, src, buf[:n])
	}
}

// acceptUDP runs a datagram from a Dynamic Authorization client through the front door's checks:
// known client by most specific prefix, framing, Message-Authenticator policy (BlastRADIUS), the
// Request Authenticator (RFC 5176 §2.3), attribute sanity.
func (r *Relay) acceptUDP(s *net.UDPConn, src netip.AddrPort, raw []byte) {
	c := r.tables.Load().clients.Lookup(src.Addr())
	if c == nil {
		r.drop(DropUnknownClient, "", src.String(), nil)
		return
	}
	p, err := packet.Parse(raw)
	if err != nil {
		r.drop(DropMalformed, c.Name, src.String(), err)
		return
	}
	code := p.Code()
	if code != packet.CodeCoARequest && code != packet.CodeDisconnectRequest {
		r.drop(DropWrongCode, c.Name, src.String(), fmt.Errorf("%v on the dynamic authorization port", code))
		return
	}
	switch packet.CheckRequestMA(p, c.Secret) {
	case packet.MAInvalid:
		r.drop(DropBadAuthenticator, c.Name, src.String(), errors.New("Message-Authenticator does not verify: check the shared secret"))
		return
	case packet.MAAbsent:
		if c.RequireMessageAuthenticator {
			r.drop(DropMissingMA, c.Name, src.String(), errors.New("request without Message-Authenticator: add it on the CoA client or set require_message_authenticator: false"))
			return
		}
		if c.LimitProxyState && p.Has(packet.AttrProxyState) {
			r.drop(DropProxyStateWithoutMA, c.Name, src.String(), nil)
			return
		}
	}
	if !packet.CheckRequestAuthenticator(p, c.Secret) {
		r.drop(DropBadAuthenticator, c.Name, src.String(), errors.New("the Request Authenticator does not verify: check the shared secret"))
		return
	}
	if err := packet.CheckRequest(p); err != nil {
		r.drop(DropMalformed, c.Name, src.String(), err)
		return
	}
	in := inbound{from: c.Name, p: append(packet.Packet(nil), p...), secret: c.Secret,
		reply: func(resp []byte) error { _, err := s.WriteToUDPAddrPort(resp, src); return err }}
	in.key = dupKey{origin: "udp:" + src.String(), id: p.ID()}
	copy(in.key.auth[:], p.Authenticator())
	r.handle(in)
}

// ServeUpstream relays a CoA-Request or Disconnect-Request the cloud sent on an upstream RadSec
// connection (draft-ietf-radext-reverse-coa): verified with the connection's secret, answered on
// the same connection through reply. conn tells the upstream's connections apart (identifiers are
// per connection). It implements proxy.DynAuth.
func (r *Relay) ServeUpstream(upstream string, conn uint64, secret []byte, p packet.Packet, reply func(resp []byte) error) {
	r.serveStream("cloud:"+upstream, fmt.Sprintf("radsec:%s#%d", upstream, conn), secret, p, reply)
}

// serveStream checks a request that came on a RadSec connection (TLS authenticated the peer; the
// RADIUS authenticators still use the connection's secret, RFC 6614 §2.3) and relays it.
func (r *Relay) serveStream(from, origin string, secret []byte, p packet.Packet, reply func(resp []byte) error) {
	code := p.Code()
	if code != packet.CodeCoARequest && code != packet.CodeDisconnectRequest {
		r.drop(DropWrongCode, from, origin, fmt.Errorf("%v on a radsec connection", code))
		return
	}
	if packet.CheckRequestMA(p, secret) == packet.MAInvalid || !packet.CheckRequestAuthenticator(p, secret) {
		r.drop(DropBadAuthenticator, from, origin, errors.New("authenticator does not verify with the RadSec secret"))
		return
	}
	if err := packet.CheckRequest(p); err != nil {
		r.drop(DropMalformed, from, origin, err)
		return
	}
	in := inbound{from: from, p: append(packet.Packet(nil), p...), secret: secret, reply: reply}
	in.key = dupKey{origin: origin, id: p.ID()}
	copy(in.key.auth[:], p.Authenticator())
	r.handle(in)
}

// ServePeer relays a CoA-Request or Disconnect-Request a RadSec peer with dynamic_authorization
// sent to the RadSec listener, verified with the peer's secret and answered on its connection. It
// implements proxy.PeerDynAuth.
func (r *Relay) ServePeer(peer string, conn uint64, secret []byte, p packet.Packet, reply func(resp []byte) error) {
	r.serveStream("radsec:"+peer, fmt.Sprintf("radsec-peer:%s#%d", peer, conn), secret, p, reply)
}

// handle absorbs duplicates, routes, and sends the request to its NAS or answers it with a NAK.
func (r *Relay) handle(in inbound) {
	now := r.opts.Now()
	r.mu.Lock()
	if e, ok := r.dups[in.key]; ok {
		answer := e.answer
		r.mu.Unlock()
		if answer == nil {
			r.drop(DropDuplicate, in.from, in.key.origin, nil)
			return
		}
		r.stats.DuplicateAnswered.Add(1)
		in.reply(answer)
		return
	}
	if len(r.dups) >= maxTracked {
		r.mu.Unlock()
		r.stats.Requests.Add(1)
		r.opts.Logger.Warn("dynamic authorization requests beyond the tracking limit", "peer", in.from, "limit", maxTracked)
		if resp, err := NAK(in.p, in.secret, CauseResourcesUnavailable); err == nil {
			in.reply(resp) // not cached: a retransmission is judged again
			r.stats.nak(CauseResourcesUnavailable)
			if in.done != nil {
				in.done(Outcome{Code: in.p.Code().String(), From: in.from, Result: "nak", ErrorCause: CauseResourcesUnavailable})
			}
		}
		return
	}
	r.dups[in.key] = &dupEntry{}
	r.mu.Unlock()
	r.stats.Requests.Add(1)

	nas, to, how, cause := r.route(in.p)
	if cause != 0 {
		r.refuse(in, nas, how, cause, now)
		return
	}
	ap := netip.AddrPortFrom(to, nas.CoAPort)
	r.mu.Lock()
	sp := r.ids[ap]
	if sp == nil {
		sp = new(idSpace)
		r.ids[ap] = sp
	}
	var id uint8
	ok := sp.n < r.opts.MaxOutstanding
	if ok {
		id, ok = sp.take()
	}
	r.mu.Unlock()
	if !ok {
		r.refuse(in, nas, how, CauseResourcesUnavailable, now)
		return
	}
	fwd, err := forward(in.p, in.secret, nas.Secret, id)
	if err != nil {
		r.mu.Lock()
		sp.free(id)
		r.mu.Unlock()
		r.opts.Logger.Warn("dynamic authorization request not relayable", "nas", nas.Name, "peer", in.from, "err", err)
		r.refuse(in, nas, how, CauseResourcesUnavailable, now)
		return
	}
	pd := &pending{in: in, nas: nas, route: how, fwd: fwd, to: ap, start: now,
		wait: r.opts.Timeout, next: now.Add(r.opts.Timeout)}
	r.mu.Lock()
	r.pending[pendKey{ap, id}] = pd
	r.mu.Unlock()
	r.stats.NAS(nas.Name).Requests.Add(1)
	r.opts.Logger.Debug("dynamic authorization relayed", "nas", nas.Name, "peer", in.from, "code", in.p.Code(), "id", id, "reason", how)
	if _, err := r.out.WriteToUDPAddrPort(fwd, ap); err != nil {
		r.opts.Logger.Warn("dynamic authorization send failed", "nas", nas.Name, "err", err)
	}
}

// refuse answers a request mxedge cannot relay with a NAK carrying cause.
func (r *Relay) refuse(in inbound, nas *NAS, how string, cause uint32, now time.Time) {
	resp, err := NAK(in.p, in.secret, cause)
	if err != nil {
		r.opts.Logger.Error("dynamic authorization nak not built", "err", err)
		return
	}
	name := ""
	if nas != nil {
		name = nas.Name
	}
	r.finish(in, name, how, resp, "nak", cause, now)
}

// finish sends the answer, keeps it for retransmissions, counts it and reports the outcome.
func (r *Relay) finish(in inbound, nas, how string, resp packet.Packet, result string, cause uint32, start time.Time) {
	now := r.opts.Now()
	r.mu.Lock()
	r.dups[in.key] = &dupEntry{answer: resp, until: now.Add(r.opts.DuplicateWindow)}
	r.mu.Unlock()
	if err := in.reply(resp); err != nil {
		r.opts.Logger.Warn("dynamic authorization answer not sent", "peer", in.from, "err", err)
	}
	switch result {
	case "ack":
		r.stats.ACK.Add(1)
	default:
		r.stats.nak(cause)
	}
	if result == "timeout" {
		r.stats.Timeouts.Add(1)
	}
	if nas != "" {
		ns := r.stats.NAS(nas)
		switch result {
		case "ack":
			ns.ACK.Add(1)
		case "timeout":
			ns.Timeouts.Add(1)
		default:
			ns.NAK.Add(1)
		}
	}
	o := Outcome{Code: in.p.Code().String(), From: in.from, NAS: nas, Route: how, Session: sessionOf(in.p),
		Result: result, ErrorCause: cause, Dur: now.Sub(start)}
	args := []any{"code", o.Code, "peer", o.From, "nas", o.NAS, "reason", o.Route, "result", o.Result, "dur", o.Dur}
	if o.Session.UserName != "" {
		args = append(args, "user", o.Session.UserName)
	}
	if o.Session.CallingStationID != "" {
		args = append(args, "mac", o.Session.CallingStationID)
	}
	if cause != 0 {
		args = append(args, "error_cause", cause)
	}
	r.opts.Logger.Info("dynamic authorization", args...)
	if r.opts.Observer != nil {
		r.opts.Observer.DynAuthOutcome(o)
	}
	if in.done != nil {
		in.done(o)
	}
}

func (r *Relay) readNASes() {
	buf := make([]byte, packet.MaxLen+1)
	for {
		n, src, err := r.out.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.answer(netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), buf[:n])
	}
}

// answer completes the request a NAS's ACK or NAK answers, once it verifies with the NAS's secret
// against the request mxedge sent (RFC 5176 §2.3, RFC 3579 §3.2).
func (r *Relay) answer(src netip.AddrPort, raw []byte) {
	resp, err := packet.Parse(raw)
	if err != nil {
		r.drop(DropBadNASReply, "", src.String(), err)
		return
	}
	k := pendKey{src, resp.ID()}
	r.mu.Lock()
	pd := r.pending[k]
	if pd == nil {
		r.mu.Unlock()
		r.drop(DropBadNASReply, "", src.String(), fmt.Errorf("no request outstanding on id %d", resp.ID()))
		return
	}
	secret := pd.nas.Secret
	if !answers(pd.fwd.Code(), resp.Code()) ||
		!packet.CheckResponseAuthenticator(resp, pd.fwd.Authenticator(), secret) ||
		packet.CheckResponseMA(resp, pd.fwd.Authenticator(), secret) == packet.MAInvalid {
		r.mu.Unlock()
		r.drop(DropBadNASReply, pd.nas.Name, src.String(), errors.New("answer does not verify: check the NAS secret"))
		return
	}
	delete(r.pending, k)
	r.ids[src].free(k.id)
	r.mu.Unlock()

	back, err := packet.ForwardResponse(nil, resp, &packet.Rekey{FromSecret: secret, FromAuth: pd.fwd.Authenticator(),
		ToSecret: pd.in.secret}, pd.in.p, nil)
	if err != nil {
		r.opts.Logger.Warn("dynamic authorization answer not relayable", "nas", pd.nas.Name, "err", err)
		r.refuse(pd.in, pd.nas, pd.route, CauseResourcesUnavailable, pd.start)
		return
	}
	result, cause := "ack", uint32(0)
	if resp.Code() == packet.CodeCoANAK || resp.Code() == packet.CodeDisconnectNAK {
		result = "nak"
		if v, ok := resp.Attr(attrErrorCause); ok && len(v) == 4 {
			cause = binary.BigEndian.Uint32(v)
		}
	}
	r.finish(pd.in, pd.nas.Name, pd.route, back, result, cause, pd.start)
}

func answers(req, resp packet.Code) bool {
	switch req {
	case packet.CodeCoARequest:
		return resp == packet.CodeCoAACK || resp == packet.CodeCoANAK
	case packet.CodeDisconnectRequest:
		return resp == packet.CodeDisconnectACK || resp == packet.CodeDisconnectNAK
	}
	return false
}

// check retransmits what a NAS left unanswered, with the wait doubled each time, answers 506 once
// the retries are spent, and forgets expired duplicate-cache entries.
func (r *Relay) check(now time.Time) {
	var resend []*pending
	var expired []*pending
	r.mu.Lock()
	for k, pd := range r.pending {
		if now.Before(pd.next) {
			continue
		}
		if pd.retries >= r.opts.Retries {
			delete(r.pending, k)
			r.ids[k.to].free(k.id)
			expired = append(expired, pd)
			continue
		}
		pd.retries++
		pd.wait *= 2
		pd.next = now.Add(pd.wait)
		resend = append(resend, pd)
	}
	for k, e := range r.dups {
		if e.answer != nil && !now.Before(e.until) {
			delete(r.dups, k)
		}
	}
	r.mu.Unlock()
	for _, pd := range resend {
		// RFC 5080 §2.2.1: a retransmission is the same packet, identifier and authenticator.
		r.stats.Retransmissions.Add(1)
		r.out.WriteToUDPAddrPort(pd.fwd, pd.to)
	}
	for _, pd := range expired {
		r.opts.Logger.Warn("nas did not answer dynamic authorization", "nas", pd.nas.Name, "peer", pd.in.from,
			"dur", now.Sub(pd.start).Round(time.Millisecond))
		resp, err := NAK(pd.in.p, pd.in.secret, CauseResourcesUnavailable)
		if err != nil {
			continue
		}
		r.finish(pd.in, pd.nas.Name, pd.route, resp, "timeout", CauseResourcesUnavailable, pd.start)
	}
}

// drop counts a datagram dropped for reason and logs it, at most once a second per reason.
func (r *Relay) drop(reason DropReason, who, src string, err error) {
	r.stats.Dropped[reason].Add(1)
	now := r.opts.Now().UnixNano()
	last := r.lastLog[reason].Load()
	if now-last < int64(time.Second) || !r.lastLog[reason].CompareAndSwap(last, now) {
		return
	}
	args := []any{"reason", reason.String(), "peer", src}
	if who != "" {
		args = append(args, "nas", who)
	}
	if err != nil {
		args = append(args, "err", err)
	}
	level := slog.LevelWarn
	if reason == DropDuplicate {
		level = slog.LevelDebug
	}
	r.opts.Logger.Log(context.Background(), level, "dynamic authorization dropped", args...)
}

// NASNames returns the configured NASes' names, in configuration order.
func (r *Relay) NASNames() []string {
	var out []string
	for _, c := range r.tables.Load().nases.All() {
		out = append(out, c.Name)
	}
	return out
}
