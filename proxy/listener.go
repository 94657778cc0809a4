package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// RadSecPeer is a device or proxy allowed to speak RadSec to mxedge (the seed's APs and switches keep
// a secondary RadSec tunnel to the edge). It is identified by source address and by a name in its
// certificate.
type RadSecPeer struct {
	Client
	// CertNames lists names one of which the peer certificate must carry (SAN DNS, SAN email, SAN
	// URI, SAN IP or, when it has no DNS, email or URI SAN, the subject CN). It is required: the CA
	// that signs NAS certificates often signs laptops and phones too, and any of those could
	// otherwise pose as a NAS from an allowed address. AnyCertName alone accepts every
	// certificate the CA verifies, and is logged as a warning.
	CertNames []string
	// DynamicAuthorization lets the peer send CoA-Request and Disconnect-Request on its
	// connections, relayed to the NAS by ListenerOptions.DynAuth (RFC 5176 over RFC 6614). Other
	// peers' get wrong-code, as before.
	DynamicAuthorization bool
}

// PeerDynAuth relays Dynamic Authorization requests a RadSec peer sends to the listener. The
// listener declares it because it calls it, from the connection's read loop: it must not block.
// conn tells the peer's connections apart; reply queues the answer on the same connection.
type PeerDynAuth interface {
	ServePeer(peer string, conn uint64, secret []byte, p packet.Packet, reply func(resp []byte) error)
}

// AnyCertName, as the only entry of RadSecPeer.CertNames, accepts any certificate the listener's CA
// verifies.
const AnyCertName = "*"

// Listener defaults. The idle timeout is radsecproxy's (its TLS server closes a connection after
// 900 s without a request); FreeRADIUS's sites-available/tls sets idle_timeout = 30 and
// max_connections = 16 for a whole listener.
const (
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultIdleTimeout        = 15 * time.Minute
	DefaultMaxConnsPerPeer    = 8
	DefaultMaxInFlightPerPeer = 1024
)

// ListenerOptions configure the RadSec listener.
type ListenerOptions struct {
	Addrs []string // e.g. ["0.0.0.0:2083", "[::]:2083"]
	// TLS must carry the server certificate and ClientCAs; client certificates are always required
	// and verified (RFC 6614 §2.3 mutual authentication). GetConfigForClient/GetCertificate make
	// reloads apply to new connections. TLS 1.2 is limited to RadSecCipherSuites unless the
	// configuration lists its own.
	TLS              *tls.Config
	Peers            []RadSecPeer
	HandshakeTimeout time.Duration // default DefaultHandshakeTimeout
	// IdleTimeout closes a connection that brought no request for that long. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConnsPerPeer caps the connections one peer address holds open, handshakes included; a
	// connection beyond it is closed at once. Default DefaultMaxConnsPerPeer.
	MaxConnsPerPeer int
	// MaxInFlightPerPeer caps the requests one peer address has waiting for an answer over all its
	// connections; a request beyond it is dropped (DropPeerInFlight), so that one busy or hostile
	// peer cannot take the capacity every other peer shares. Default DefaultMaxInFlightPerPeer.
	MaxInFlightPerPeer int
	// DynAuth, if set, receives CoA-Request and Disconnect-Request from peers with
	// DynamicAuthorization.
	DynAuth PeerDynAuth
	Logger  *slog.Logger
}

// Validate checks the options before any socket is bound.
func (o *ListenerOptions) Validate() error {
	if len(o.Addrs) == 0 {
		return nil
	}
	if o.TLS == nil {
		return errors.New("proxy: radsec listener without TLS configuration")
	}
	if len(o.Peers) == 0 {
		return errors.New("proxy: radsec listener without peers")
	}
	if o.HandshakeTimeout < 0 || o.IdleTimeout < 0 || o.MaxConnsPerPeer < 0 || o.MaxInFlightPerPeer < 0 {
		return errors.New("proxy: radsec listener: negative limit")
	}
	return validatePeers(o.Peers)
}

// ErrNoCertNames is returned for a RadSec peer without cert_names.
var ErrNoCertNames = errors.New("proxy: radsec peer without certificate names")

func validatePeers(peers []RadSecPeer) error {
	for _, p := range peers {
		if len(p.CertNames) == 0 {
			return fmt.Errorf("%w: %q (list the names its certificate carries, or %q for any)", ErrNoCertNames, p.Name, AnyCertName)
		}
		if slices.Contains(p.CertNames, AnyCertName) && len(p.CertNames) > 1 {
			return fmt.Errorf("proxy: radsec peer %q: %q accepts any certificate and cannot be listed with other names", p.Name, AnyCertName)
		}
	}
	return nil
}

// RadSecCipherSuites are the TLS 1.2 cipher suites RadSec connections offer and accept: ECDHE for
// forward secrecy and AEAD only (RFC 9325 §4.2); CBC with SHA-1 MACs is out. TLS 1.3 suites are
// all AEAD and not configurable.
func RadSecCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// ListenerStats count what happened to RadSec connections; requests are counted in Stats.
type ListenerStats struct {
	Accepted        atomic.Uint64 // connections that passed the handshake and the peer checks
	UnknownPeer     atomic.Uint64 // connections from an address no peer has
	HandshakeFailed atomic.Uint64
	CertRejected    atomic.Uint64 // certificate without one of the peer's cert_names
	OverConnLimit   atomic.Uint64 // connections refused: the peer address was at MaxConnsPerPeer
	OverInFlight    atomic.Uint64 // requests dropped: the peer address was at MaxInFlightPerPeer
	Idle            atomic.Uint64 // connections closed by the idle timeout
	Reloaded        atomic.Uint64 // connections closed because a reload removed or changed their peer
	Stalled         atomic.Uint64 // connections closed because the peer stopped reading its responses
	// VersionRefused counts connections closed after the handshake because the peer did not
	// negotiate RADIUS/1.1 and the listener requires it (radius_version: require), or negotiated
	// it over TLS 1.2.
	VersionRefused atomic.Uint64
	// Untranslatable counts RADIUS/1.1 requests dropped because they could not be carried in
	// classic form (radsec.Translator: 256 outstanding on one connection, or a malformed value).
	Untranslatable atomic.Uint64
}

// Listener accepts RadSec connections and feeds their requests into the same path as UDP.
type Listener struct {
	opts    ListenerOptions
	server  *Server
	peers   atomic.Pointer[peerTable]
	tls     atomic.Pointer[tls.Config]
	lns     []net.Listener
	connID  atomic.Uint64
	stats   ListenerStats
	limiter *logLimiter // keyed by a fixed set of events, never by address: bounded
	epoch   time.Time   // in-flight expiries are monotonic offsets from it
	ttl     time.Duration

	mu         sync.Mutex
	closeConns context.CancelFunc
	byAddr     map[netip.Addr]*peerState // addresses with a connection open
	live       map[*peerConn]struct{}    // connections past the peer checks
	conns      sync.WaitGroup
}

type peerTable struct {
	table   *ClientTable
	names   map[*Client][]string
	dynAuth map[string]bool // peers that may send CoA and Disconnect, by name
}

// peerState is what one peer address holds. conns is guarded by Listener.mu; the rest by mu.
type peerState struct {
	conns    int
	mu       sync.Mutex
	inFlight int
	open     []*peerConn
}

// peerConn is one established RadSec connection.
type peerConn struct {
	id     uint64
	src    netip.AddrPort
	raw    net.Conn
	peer   *peerState
	client *Client
	names  []string
	cert   *x509.Certificate   // the leaf
	chain  []*x509.Certificate // as the peer sent it, to verify again when the CA changes
	tls    *tls.Config         // the configuration its handshake used
	state  TLSInfo             // what the handshake negotiated
	v11    *radsec.Translator  // non-nil: the connection speaks RADIUS/1.1 (RFC 9765)
	out    radsec.ReplyFunc    // writes a classic response on the stream (translated on RADIUS/1.1)
	w      ResponseWriter      // made by the reading goroutine before its first request
	// slots holds, per RADIUS ID, the requests with that ID in flight. Guarded by peer.mu.
	slots [256]idSlot
	// reloaded is set when a reload closed the connection.
	reloaded atomic.Bool
}

// idSlot counts the requests in flight with one RADIUS ID on one connection. A reply frees one; a
// request dropped on the way has no reply, so the slot also expires (exp, nanoseconds after
// Listener.epoch). A peer reusing an ID in flight is a protocol error (RFC 6614 §2.5 keeps the
// ID space per connection) but cannot get round the cap by it: each new request counts.
type idSlot struct {
	exp  int64
	n    uint16
	auth [16]byte // the last request's Request Authenticator, to know a retransmission
}

// NewListener creates the listener.
func NewListener(o ListenerOptions, s *Server) (*Listener, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxConnsPerPeer == 0 {
		o.MaxConnsPerPeer = DefaultMaxConnsPerPeer
	}
	if o.MaxInFlightPerPeer == 0 {
		o.MaxInFlightPerPeer = DefaultMaxInFlightPerPeer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{
		opts: o, server: s, limiter: newLogLimiter(10 * time.Second), epoch: time.Now(),
		// Twice the budget the front door gives a request to be answered or handed to the
		// fallback: a request still unanswered then was dropped on the way.
		ttl:    2 * s.opts.RequestTimeout,
		byAddr: map[netip.Addr]*peerState{}, live: map[*peerConn]struct{}{},
	}
	l.tls.Store(hardenTLS(o.TLS))
	if err := l.SetPeers(o.Peers); err != nil {
		return nil, err
	}
	return l, nil
}

// hardenTLS returns a copy of cfg limited to RadSecCipherSuites when it lists none of its own,
// whose session tickets keep a RADIUS/1.1 session from resuming as historic RADIUS/TLS
// (radsec.BindResumption).
func hardenTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	if cfg.CipherSuites == nil {
		cfg.CipherSuites = RadSecCipherSuites()
	}
	radsec.BindResumption(cfg)
	return cfg
}

// Stats returns the connection counters.
func (l *Listener) Stats() *ListenerStats { return &l.stats }

// SetPeers installs a new peer list (reload). Connections whose peer was removed, or changed in
// any way (address, name, secret, certificate names, vendor, site), are closed at once; the peer
// connects again under its new entry if it still has one.
func (l *Listener) SetPeers(peers []RadSecPeer) error {
	if err := validatePeers(peers); err != nil {
		return err
	}
	clients := make([]Client, len(peers))
	for i, p := range peers {
		clients[i] = p.Client
		if len(clients[i].Secret) == 0 {
			clients[i].Secret = Secret(radsec.DefaultSecret)
		}
	}
	t, err := NewClientTable(clients, func(name string) *NASStats { return l.server.NASStats("radsec:" + name) })
	if err != nil {
		return err
	}
	pt := &peerTable{table: t, names: map[*Client][]string{}, dynAuth: map[string]bool{}}
	for i, c := range t.All() {
		pt.names[c] = peers[i].CertNames
		pt.dynAuth[c.Name] = peers[i].DynamicAuthorization
		if peers[i].CertNames[0] == AnyCertName {
			l.opts.Logger.Warn("radsec peer accepts any certificate the ca verifies", "nas", c.Name)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peers.Store(pt)
	for pc := range l.live {
		if !pt.admits(pc) {
			l.drop(pc)
		}
	}
	return nil
}

// drop closes a connection a reload no longer admits: the socket under TLS, so that nothing waits
// on the peer. l.mu is held.
func (l *Listener) drop(pc *peerConn) {
	delete(l.live, pc)
	pc.reloaded.Store(true)
	pc.raw.Close()
	l.stats.Reloaded.Add(1)
	l.logLimited("reload", slog.LevelInfo, "radsec peer disconnected: removed or changed by a reload",
		"peer", pc.src, "nas", pc.client.Name)
	// A handshake under way when the reload came is checked again by register.
}

// admits reports whether the table still has pc's peer, unchanged.
func (pt *peerTable) admits(pc *peerConn) bool {
	c := pt.table.Lookup(pc.src.Addr())
	return c != nil && sameClient(c, pc.client) && slices.Equal(pt.names[c], pc.names) &&
		certMatches(pc.cert, pt.names[c])
}

func sameClient(a, b *Client) bool {
	return a.Name == b.Name && a.Prefix == b.Prefix && bytes.Equal(a.Secret, b.Secret) && a.Vendor == b.Vendor &&
		a.Site == b.Site && a.RequireMessageAuthenticator == b.RequireMessageAuthenticator &&
		a.LimitProxyState == b.LimitProxyState
}

// SetTLS installs a new TLS configuration (reload) for connections accepted from now on, and
// closes the established connections whose certificate its ClientCAs no longer verify (a CA
// removed or replaced).
func (l *Listener) SetTLS(cfg *tls.Config) {
	if cfg == nil {
		return
	}
	cfg = hardenTLS(cfg)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tls.Store(cfg)
	if cfg.ClientCAs == nil {
		return // chosen per connection (GetConfigForClient): nothing to check against here
	}
	for pc := range l.live {
		if !verifies(cfg.ClientCAs, pc.chain) {
			l.drop(pc)
		}
	}
}

// verifies reports whether roots verify chain as a client certificate, as the handshake did.
func verifies(roots *x509.CertPool, chain []*x509.Certificate) bool {
	if len(chain) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// UseListener serves an already bound socket (systemd socket activation); the configured addresses
// are then not bound.
func (l *Listener) UseListener(ln net.Listener) { l.lns = append(l.lns, ln) }

// Listen binds the TCP sockets, unless sockets were handed over with UseListener.
func (l *Listener) Listen() error {
	if len(l.lns) > 0 {
		return nil
	}
	for _, a := range l.opts.Addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, x := range l.lns {
				x.Close()
			}
			return fmt.Errorf("proxy: radsec listen %s: %w", a, err)
		}
		l.lns = append(l.lns, ln)
	}
	return nil
}

// Addrs returns the bound addresses.
func (l *Listener) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, ln := range l.lns {
		out = append(out, ln.Addr().(*net.TCPAddr).AddrPort())
	}
	return out
}

// Run accepts connections until ctx ends. Established connections keep serving (so answers to
// requests in flight still reach their peers) until Close.
func (l *Listener) Run(ctx context.Context) error {
	connCtx, cancel := context.WithCancel(context.Background())
	l.mu.Lock()
	l.closeConns = cancel
	l.mu.Unlock()
	var accepting sync.WaitGroup
	for _, ln := range l.lns {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			l.acceptLoop(connCtx, ln)
		}()
	}
	<-ctx.Done()
	for _, ln := range l.lns {
		ln.Close()
	}
	accepting.Wait()
	return nil
}

// Close ends every established connection and waits for their goroutines.
func (l *Listener) Close() {
	l.mu.Lock()
	cancel := l.closeConns
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	l.conns.Wait()
}

func (l *Listener) acceptLoop(ctx context.Context, ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.opts.Logger.Warn("radsec accept failed", "err", err)
			if !sleep(ctx, 50*time.Millisecond) {
				return
			}
			continue
		}
		l.conns.Add(1)
		go func() {
			defer l.conns.Done()
			l.serve(ctx, nc)
		}()
	}
}

// logLimited logs at most one line per event every 10 s, with the count of lines it held back.
func (l *Listener) logLimited(event string, level slog.Level, msg string, args ...any) {
	l.limiter.log(l.opts.Logger, level, "radsec "+event, msg, l.server.opts.Now(), args...)
}

// enter counts a connection from addr against its peer's cap; ok is false when it is over.
func (l *Listener) enter(addr netip.Addr) (*peerState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := l.byAddr[addr]
	if ps == nil {
		ps = &peerState{}
		l.byAddr[addr] = ps
	}
	if ps.conns >= l.opts.MaxConnsPerPeer {
		return nil, false
	}
	ps.conns++
	return ps, true
}

func (l *Listener) leave(addr netip.Addr, ps *peerState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps.conns--
	if ps.conns == 0 {
		delete(l.byAddr, addr)
	}
}

func (l *Listener) serve(ctx context.Context, nc net.Conn) {
	src := nc.RemoteAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	pt := l.peers.Load()
	client := pt.table.Lookup(src.Addr())
	if client == nil {
		nc.Close()
		l.stats.UnknownPeer.Add(1)
		l.server.stats.Dropped[DropUnknownClient].Add(1)
		l.logLimited("unknown", slog.LevelWarn, "radsec connection from an unknown address", "peer", src)
		return
	}
	ps, ok := l.enter(src.Addr())
	if !ok {
		nc.Close()
		l.stats.OverConnLimit.Add(1)
		l.logLimited("conns", slog.LevelWarn, "radsec connection refused: peer at its connection limit",
			"peer", src, "nas", client.Name, "limit", l.opts.MaxConnsPerPeer)
		return
	}
	defer l.leave(src.Addr(), ps)

	tlsCfg := l.tls.Load()
	tc := radsec.Server(nc, tlsCfg)
	hctx, cancel := context.WithTimeout(ctx, l.opts.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		nc.Close()
		l.stats.HandshakeFailed.Add(1)
		l.logLimited("handshake", slog.LevelWarn, "radsec handshake failed", "peer", src, "nas", client.Name, "err", err)
		return
	}
	state := tc.ConnectionState()
	if len(state.PeerCertificates) == 0 || !certMatches(state.PeerCertificates[0], pt.names[client]) {
		nc.Close()
		l.stats.CertRejected.Add(1)
		l.logLimited("cert", slog.LevelWarn, "radsec peer certificate name not allowed", "peer", src, "nas", client.Name,
			"want", strings.Join(pt.names[client], ","))
		return
	}
	if err := radsec.CheckNegotiated(radsec.VersionOf(tlsCfg), state); err != nil {
		// RFC 9765: a server that requires RADIUS/1.1 closes a connection whose client did not
		// offer "radius/1.1" (one that offered other names only failed the handshake already,
		// with the no_application_protocol alert crypto/tls sends).
		nc.Close()
		l.stats.VersionRefused.Add(1)
		l.logLimited("version", slog.LevelWarn, "radsec peer refused: radius version", "peer", src, "nas", client.Name, "err", err,
			"hint", "the peer does not offer RADIUS/1.1 (ALPN radius/1.1); set the listener's radius_version: allow")
		return
	}
	pc := &peerConn{id: l.connID.Add(1), src: src, raw: nc, peer: ps, client: client, names: pt.names[client],
		cert: state.PeerCertificates[0], chain: state.PeerCertificates, tls: tlsCfg, state: NewTLSInfo(state)}
	if radsec.Is11(state) {
		pc.v11 = radsec.NewTranslator(client.Secret, l.ttl)
	}
	if !l.register(pc) {
		nc.Close()
		l.stats.Reloaded.Add(1)
		l.logLimited("reload", slog.LevelInfo, "radsec peer disconnected: removed or changed by a reload", "peer", src, "nas", client.Name)
		return
	}
	l.stats.Accepted.Add(1)
	l.opts.Logger.Info("radsec peer connected", "peer", src, "nas", client.Name, "tls", tls.VersionName(state.Version),
		"group", pc.state.Group, "radius", pc.state.RADIUS)
	err = radsec.ServeConn(ctx, tc, radsec.ServeOptions{Cork: l.server.opts.Cork, IdleTimeout: l.opts.IdleTimeout},
		func(p packet.Packet, reply radsec.ReplyFunc) { l.handle(pc, p, reply) })
	l.unregister(pc)
	switch {
	case pc.reloaded.Load():
		// logged by drop
	case errors.Is(err, radsec.ErrNotReading):
		l.stats.Stalled.Add(1)
		l.logLimited("stalled", slog.LevelWarn, "radsec peer disconnected: not reading its responses", "peer", src, "nas", client.Name)
	case errors.Is(err, radsec.ErrIdle):
		l.stats.Idle.Add(1)
		l.opts.Logger.Info("radsec peer disconnected: idle", "peer", src, "nas", client.Name, "dur", l.opts.IdleTimeout)
	default:
		l.opts.Logger.Info("radsec peer disconnected", "peer", src, "nas", client.Name, "err", err)
	}
}

// register makes pc live unless the peer table or the CA changed during its handshake and no
// longer admit it (SetPeers and SetTLS hold l.mu while they check the live connections, so none
// slips between).
func (l *Listener) register(pc *peerConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.peers.Load().admits(pc) {
		return false
	}
	if cfg := l.tls.Load(); cfg != pc.tls && cfg.ClientCAs != nil && !verifies(cfg.ClientCAs, pc.chain) {
		return false
	}
	l.live[pc] = struct{}{}
	ps := pc.peer
	ps.mu.Lock()
	ps.open = append(ps.open, pc)
	ps.mu.Unlock()
	return true
}

func (l *Listener) unregister(pc *peerConn) {
	l.mu.Lock()
	delete(l.live, pc)
	l.mu.Unlock()
	ps := pc.peer
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for id := range pc.slots {
		ps.inFlight -= int(pc.slots[id].n)
		pc.slots[id] = idSlot{}
	}
	if i := slices.Index(ps.open, pc); i >= 0 {
		ps.open = slices.Delete(ps.open, i, i+1)
	}
}

// handle runs on pc's reading goroutine.
func (l *Listener) handle(pc *peerConn, p packet.Packet, reply radsec.ReplyFunc) {
	if pc.w == nil {
		// ServeConn hands every request the same ReplyFunc: wrap it, and build the stream's
		// ResponseWriter, once.
		out := reply
		if tr := pc.v11; tr != nil {
			// RADIUS/1.1: requests go down the classic path in classic form, and their responses
			// go back in RADIUS/1.1 form with their request's Token.
			out = func(resp []byte) error {
				r11, err := tr.Response(resp)
				if err != nil {
					return err
				}
				return reply(r11)
			}
		}
		pc.out = out
		pc.w = newStreamWriter(pc.client, pc.src, pc.id, func(resp []byte) error {
			if len(resp) > 1 {
				l.answered(pc, resp[1])
			}
			return out(resp)
		})
	}
	if pc.v11 != nil {
		classic, err := pc.v11.Request(p)
		if err != nil {
			// 256 outstanding on the connection is an in-flight cap like MaxInFlightPerPeer;
			// anything else is a value the classic form cannot carry.
			reason := DropMalformed
			if errors.Is(err, radsec.ErrTranslatorFull) {
				reason = DropPeerInFlight
			}
			l.server.stats.Received.Add(1)
			l.server.stats.Dropped[reason].Add(1)
			l.stats.Untranslatable.Add(1)
			l.logLimited("v11", slog.LevelWarn, "request dropped", "reason", reason.String(), "peer", pc.src,
				"nas", pc.client.Name, "err", err)
			return
		}
		p = classic
	}
	if code := p.Code(); (code == packet.CodeCoARequest || code == packet.CodeDisconnectRequest) &&
		l.opts.DynAuth != nil && l.dynAuthPeer(pc.client.Name) {
		// Not a NAS request: no in-flight slot, no front door; the relay answers on the stream.
		l.opts.DynAuth.ServePeer(pc.client.Name, pc.id, pc.client.Secret, p, pc.out)
		return
	}
	if !l.admit(pc, p.ID(), p.Authenticator()) {
		l.server.stats.Received.Add(1)
		l.server.stats.Dropped[DropPeerInFlight].Add(1)
		l.stats.OverInFlight.Add(1)
		l.logLimited("inflight", slog.LevelWarn, "request dropped", "reason", DropPeerInFlight.String(), "peer", pc.src,
			"nas", pc.client.Name, "limit", l.opts.MaxInFlightPerPeer)
		return
	}
	l.server.Accept(pc.w, p)
}

// dynAuthPeer reports whether the peer may send dynamic authorization requests.
func (l *Listener) dynAuthPeer(name string) bool { return l.peers.Load().dynAuth[name] }

func (l *Listener) now() int64 { return int64(time.Since(l.epoch)) } // monotonic

// admit counts a request as in flight for pc's peer, unless the peer is at its cap. A
// retransmission of a request in flight (same ID and Request Authenticator) passes uncounted: the
// front door's duplicate detection absorbs it.
func (l *Listener) admit(pc *peerConn, id uint8, auth []byte) bool {
	now := l.now()
	ps := pc.peer
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sl := &pc.slots[id]
	if sl.n > 0 && sl.exp > now && bytes.Equal(sl.auth[:], auth) {
		return true
	}
	if ps.inFlight >= l.opts.MaxInFlightPerPeer {
		ps.expire(now)
		if ps.inFlight >= l.opts.MaxInFlightPerPeer {
			return false
		}
	}
	sl.n++
	sl.exp = now + int64(l.ttl)
	copy(sl.auth[:], auth)
	ps.inFlight++
	return true
}

// expire frees the slots of requests that were never answered. ps.mu is held.
func (ps *peerState) expire(now int64) {
	for _, pc := range ps.open {
		for id := range pc.slots {
			if sl := &pc.slots[id]; sl.n > 0 && sl.exp <= now {
				ps.inFlight -= int(sl.n)
				*sl = idSlot{}
			}
		}
	}
}

func (l *Listener) answered(pc *peerConn, id uint8) {
	ps := pc.peer
	ps.mu.Lock()
	if sl := &pc.slots[id]; sl.n > 0 {
		sl.n--
		ps.inFlight--
	}
	ps.mu.Unlock()
}

// certMatches reports whether the certificate carries one of names (any when names is AnyCertName).
func certMatches(c *x509.Certificate, names []string) bool {
	if len(names) == 0 {
		return false
	}
	if names[0] == AnyCertName {
		return true
	}
	var have []string
	have = append(have, c.DNSNames...)
	have = append(have, c.EmailAddresses...)
	for _, u := range c.URIs {
		have = append(have, u.String())
	}
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	if len(c.DNSNames) == 0 && len(c.EmailAddresses) == 0 && len(c.URIs) == 0 {
		have = append(have, c.Subject.CommonName)
	}
	for _, n := range names {
		if slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, n) }) {
			return true
		}
	}
	return false
}
