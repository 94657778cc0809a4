package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/sockio"
	"mxedge/proxy/udpup"
)

// Target is one address an upstream name resolved to, with the name its certificate must carry.
type Target struct {
	Addr netip.AddrPort
	Host string
}

// Resolver turns an upstream's host into addresses. proxy/resolve implements it with miekg/dns;
// the edge adapts it. Resolve may return the last good targets together with an error saying why
// they are stale.
type Resolver interface {
	Resolve(ctx context.Context, host string, port uint16, srv bool) ([]Target, error)
	// Invalidate forgets cached answers for host, so a reconnect after a failure re-resolves it.
	Invalidate(host string)
}

// UpstreamOptions configure one RadSec upstream (RFC 6614). Zero values take the documented defaults.
type UpstreamOptions struct {
	Name string
	Host string // DNS name or IP literal
	Port uint16 // default 2083
	SRV  bool   // resolve _radsec._tcp.Host (RFC 7585 §2.1 style) instead of A/AAAA
	// ServerName is the name the upstream's certificate must carry (SAN); default Host, also when
	// SRV is set: the SRV target comes from DNS, which is not authenticated, so it cannot be the
	// reference identity (RFC 6125 §6, RFC 7585 §3.4) unless VerifySRVTarget says it may.
	ServerName string
	// VerifySRVTarget checks the certificate against the SRV target instead of ServerName/Host, for
	// operators whose DNS answers are authenticated (DNSSEC-validated resolvers). Default false.
	VerifySRVTarget bool
	Priority        int    // lower is preferred
	Secret          Secret // default "radsec" (RFC 6614 §2.3)
	// TLS carries the client certificate, the CA bundle and version limits; ServerName is set per
	// connection. GetClientCertificate makes certificate reloads apply to new connections.
	TLS *tls.Config
	// MaxConnections is how many parallel connections mxedge opens when 256 identifiers are in use
	// on each. Default 4.
	MaxConnections int
	DialTimeout    time.Duration // TCP connect plus TLS handshake; default 3s
	DeadAfter      time.Duration // see radsec.ConnOptions; default 2s
	StatusInterval time.Duration // see radsec.ConnOptions; default 1s
	StallAfter     time.Duration // see radsec.ConnOptions; default 500ms
	// BackoffMin is the reconnect delay while the upstream cannot be reached (TCP connect fails):
	// a fresh attempt starts every BackoffMin or every connect attempt (at most 1s), whichever is
	// longer, however long the outage, so traffic is back soon after the link is. Default 500ms.
	BackoffMin time.Duration
	// BackoffMax caps the doubling delay after failures of an upstream that accepts TCP but does not
	// serve (TLS or Status-Server fails). After a connection that served, the delay starts over.
	// Default 10s.
	BackoffMax time.Duration
	// UDP, when set, makes this a RADIUS/UDP upstream (upstream_udp.go) instead of RadSec.
	UDP *UDPOptions
	// Source is the local address connections leave from (radsecproxy's Source, FreeRADIUS's
	// src_ipaddr); invalid (the zero Addr): the kernel's choice. Only targets of its family are
	// dialled.
	Source netip.Addr
	// BindDevice binds connections to a network interface or VRF device (SO_BINDTODEVICE, Linux).
	BindDevice string
}

// Validate checks the options before anything is dialed.
func (o *UpstreamOptions) Validate() error {
	if o.Name == "" {
		return errors.New("proxy: upstream without a name")
	}
	if o.Host == "" {
		return fmt.Errorf("proxy: upstream %q: no host", o.Name)
	}
	if o.UDP != nil {
		return o.validateUDP()
	}
	if o.TLS == nil {
		return fmt.Errorf("proxy: upstream %q: no TLS configuration", o.Name)
	}
	if o.BackoffMin > o.BackoffMax && o.BackoffMax > 0 {
		return fmt.Errorf("proxy: upstream %q: backoff_min above backoff_max", o.Name)
	}
	if o.Source.IsValid() && (o.Source.IsUnspecified() || o.Source.IsMulticast()) {
		return fmt.Errorf("proxy: upstream %q: source %s is not a unicast address", o.Name, o.Source)
	}
	if len(o.BindDevice) >= 16 || strings.ContainsAny(o.BindDevice, "/ \t") {
		return fmt.Errorf("proxy: upstream %q: bind_device %q is not an interface name", o.Name, o.BindDevice)
	}
	return nil
}

func (o *UpstreamOptions) setDefaults() {
	if o.Port == 0 && o.UDP != nil {
		o.Port = DefaultUDPPort
	}
	if o.Port == 0 {
		o.Port = 2083
	}
	if len(o.Secret) == 0 {
		o.Secret = Secret(radsec.DefaultSecret)
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = DefaultDeadAfter
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = DefaultStatusInterval
	}
	if o.StallAfter <= 0 {
		o.StallAfter = DefaultStallAfter
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
}

// An upstream's defaults (UpstreamOptions); edge/config reads them rather than repeating them.
const (
	DefaultMaxConnections = 4
	DefaultDialTimeout    = 3 * time.Second
	DefaultDeadAfter      = 2 * time.Second
	DefaultStatusInterval = time.Second
	DefaultStallAfter     = 500 * time.Millisecond
	DefaultBackoffMin     = 500 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
)

// UpstreamState is an upstream's connection state.
type UpstreamState int32

const (
	StateConnecting UpstreamState = iota // never connected yet
	StateUp                              // at least one connection carries requests
	StateDown                            // the last connection failed; reconnecting with backoff
)

func (s UpstreamState) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return "connecting"
}

// Upstream is one RadSec server with its connections.
type Upstream struct {
	opts   UpstreamOptions
	idx    int
	pool   *Pool
	logger *slog.Logger
	maKey  *packet.MAKey // opts.Secret's key schedule; nil in tests that build an Upstream bare
	// dialLog limits "upstream dial failed" to one line per peer per dialLogInterval: while the
	// cloud is unreachable a connection is attempted every BackoffMin, and "upstream down" has
	// said so already. nil (an Upstream built bare in a test): every failure is logged.
	dialLog *logLimiter

	state    atomic.Int32
	rttEWMA  atomic.Int64 // nanoseconds
	answered atomic.Uint64
	failures atomic.Uint64
	// versionRefused counts connections closed after the handshake because they did not
	// negotiate the RADIUS version the configuration requires (radsec.CheckNegotiated).
	versionRefused atomic.Uint64

	mu      sync.Mutex
	conns   []*radsec.Conn
	lastErr error
	since   time.Time
	addr    netip.AddrPort
	dialSeq uint64
	grow    chan struct{}
	growing bool
	connWG  sync.WaitGroup
	udp     *udpup.Client // a RADIUS/UDP upstream; nil for RadSec
	udpAcct *udpup.Client // its accounting port; nil for none
}

// UpstreamStatus is a snapshot for status output and metrics.
type UpstreamStatus struct {
	Name        string
	State       UpstreamState
	Since       time.Time
	Addr        netip.AddrPort
	RTT         time.Duration
	Connections int
	Inflight    int
	Answered    uint64
	Failures    uint64
	// VersionRefused counts connections closed because they did not negotiate RADIUS/1.1 while
	// the configuration requires it (radius_version: require), or negotiated it over TLS 1.2.
	VersionRefused uint64
	LastError      string
	// TLS is what each live connection negotiated (version, cipher, key exchange group).
	TLS []TLSInfo `json:"TLS,omitempty"`
}

// Status returns a snapshot.
func (u *Upstream) Status() UpstreamStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := UpstreamStatus{
		Name: u.opts.Name, State: UpstreamState(u.state.Load()), Since: u.since, Addr: u.addr,
		RTT: time.Duration(u.rttEWMA.Load()), Connections: len(u.conns),
		Answered: u.answered.Load(), Failures: u.failures.Load(), VersionRefused: u.versionRefused.Load(),
	}
	for _, c := range u.conns {
		st.Inflight += c.Inflight()
		if cs, ok := c.ConnectionState(); ok {
			st.TLS = append(st.TLS, NewTLSInfo(cs))
		}
	}
	if u.udp != nil {
		st.Inflight, st.Connections = u.udp.Inflight(), u.opts.UDP.SourcePorts
	}
	if u.lastErr != nil {
		st.LastError = u.lastErr.Error()
	}
	return st
}

// Name is the configured name.
func (u *Upstream) Name() string { return u.opts.Name }

func (u *Upstream) available() bool { return UpstreamState(u.state.Load()) == StateUp }

func (u *Upstream) setState(s UpstreamState, err error) {
	old := UpstreamState(u.state.Swap(int32(s)))
	u.mu.Lock()
	if err != nil {
		u.lastErr = err
	}
	if old != s {
		u.since = u.pool.opts.Now()
	}
	u.mu.Unlock()
	if old == s {
		return
	}
	switch s {
	case StateUp:
		u.logger.Info("upstream up", "upstream", u.opts.Name, "peer", u.peer())
	case StateDown:
		u.failures.Add(1)
		u.logger.Warn("upstream down", "upstream", u.opts.Name, "err", err,
			"hint", "requests fail over to the next upstream; check the WAN link and the upstream's RadSec service")
	}
	h := u.pool.opts.Health
	if h == nil || u.pool.retired.Load() {
		return
	}
	switch s {
	case StateUp:
		h.UpstreamUp(u.opts.Name)
	case StateDown:
		reason := "connection failed"
		if err != nil {
			reason = err.Error()
		}
		h.UpstreamDown(u.opts.Name, reason)
	}
}

// peer is the address of the last connection made.
func (u *Upstream) peer() netip.AddrPort {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.addr
}

// connObserver is what an upstream's connections report to (radsec.Observer).
type connObserver struct{ u *Upstream }

func (o connObserver) RTT(d time.Duration) { o.u.observeRTT(d) }

func (o connObserver) Probe(ok bool) {
	if h := o.u.pool.opts.Health; h != nil && !o.u.pool.retired.Load() {
		h.Probe(o.u.opts.Name, ok)
	}
}

func (o connObserver) Discarded(err error) {
	o.u.pool.stats.Load().Dropped[DropBadReply].Add(1)
	o.u.logger.Debug("upstream reply discarded", "upstream", o.u.opts.Name, "err", err)
}

func (u *Upstream) observeRTT(d time.Duration) {
	u.answered.Add(1)
	old := u.rttEWMA.Load()
	if old == 0 {
		u.rttEWMA.Store(int64(d))
		return
	}
	u.rttEWMA.Store(old + (int64(d)-old)/8)
}

// exchange sends one request on the least loaded live connection, asking for another connection
// when every identifier is in use. build11 encodes it for a RADIUS/1.1 connection
// (radsec.Conn.ExchangeNative).
func (u *Upstream) exchange(build, build11 radsec.BuildFunc, deadline time.Time, h radsec.Handler) error {
	u.mu.Lock()
	var best *radsec.Conn
	bestLoad := 1 << 30
	for _, c := range u.conns {
		select {
		case <-c.Done():
			continue
		default:
		}
		if l := c.Inflight(); l < bestLoad {
			best, bestLoad = c, l
		}
	}
	if best != nil && bestLoad >= 256 && len(u.conns) < u.opts.MaxConnections && !u.growing {
		u.growing = true
		select {
		case u.grow <- struct{}{}:
		default:
		}
	}
	u.mu.Unlock()
	if best == nil {
		return radsec.ErrClosed
	}
	return best.ExchangeNative(build, build11, deadline, h)
}

// run keeps the upstream connected until ctx ends: resolve, dial, prove the connection answers a
// Status-Server (RFC 5997 §4.3) before it carries requests, serve it, and on failure reconnect.
// While the upstream cannot be reached, attempts follow each other every BackoffMin (or connect
// attempt); failures after TCP connected back off exponentially up to BackoffMax. A connection that
// served resets the backoff, so the tenth outage reconnects as fast as the first.
func (u *Upstream) run(ctx context.Context) {
	if u.udp != nil {
		u.runUDP(ctx)
		return
	}
	defer u.connWG.Wait()
	attempt := 0
	for ctx.Err() == nil {
		start := time.Now()
		served, reached, err := u.connectAndServe(ctx)
		if ctx.Err() != nil {
			return
		}
		if u.liveConns() == 0 {
			u.setState(StateDown, err)
		}
		if r := u.pool.opts.Resolver; r != nil {
			r.Invalidate(u.opts.Host)
		}
		var d time.Duration
		switch {
		case served:
			// A connection that served and was lost: reconnect at once (an upstream that closed
			// an idle connection is back in one round trip); if that fails, the next case paces it.
			attempt = 0
		case reached:
			attempt++
			d = u.backoff(attempt)
		default:
			// Unreachable (refused, or no SYN-ACK within the connect attempt): try again soon,
			// counting the attempt's own duration as part of the wait.
			d = u.backoff(0) - time.Since(start)
		}
		if d > 0 && !sleep(ctx, d) {
			return
		}
	}
}

// connectAndServe makes one connection and serves it (and any extra connections grown for it)
// until it fails. served says the connection carried requests; reached that TCP connected.
func (u *Upstream) connectAndServe(ctx context.Context) (served, reached bool, err error) {
	c, reached, err := u.dial(ctx)
	if err != nil {
		return false, reached, err
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	if err := u.probe(c); err != nil {
		c.Close()
		<-errc
		u.logger.Warn("upstream did not answer Status-Server", "upstream", u.opts.Name, "peer", u.peer(), "err", err)
		return false, true, err
	}
	u.addConn(c)
	u.setState(StateUp, nil)
	for {
		select {
		case err := <-errc:
			u.removeConn(c)
			if ctx.Err() == nil {
				u.logger.Warn("upstream connection lost", "upstream", u.opts.Name, "peer", u.peer(), "err", err)
			}
			return true, true, err
		case <-u.grow:
			u.connWG.Add(1)
			go func() {
				defer u.connWG.Done()
				extra, _, err := u.dial(ctx)
				u.mu.Lock()
				u.growing = false
				u.mu.Unlock()
				if err != nil {
					return
				}
				u.addConn(extra)
				extra.Run(ctx)
				u.removeConn(extra)
			}()
		}
	}
}

// errNoStatusReply is returned when a new connection does not answer its first Status-Server.
var errNoStatusReply = errors.New("proxy: no answer to Status-Server on a new connection")

// probe sends one Status-Server and waits DeadAfter for the answer.
func (u *Upstream) probe(c *radsec.Conn) error {
	res := make(chan error, 1)
	deadline := u.pool.opts.Now().Add(u.opts.DeadAfter)
	err := c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) {
		return radsec.StatusServer(dst, id, u.opts.Secret)
	}, deadline, func(_ packet.Packet, err error) { res <- err })
	if err != nil {
		return err
	}
	t := time.NewTimer(u.opts.DeadAfter + 100*time.Millisecond)
	defer t.Stop()
	select {
	case err := <-res:
		if errors.Is(err, radsec.ErrTimeout) {
			return errNoStatusReply
		}
		return err
	case <-t.C:
		return errNoStatusReply
	}
}

// backoff is the delay before reconnect attempt number attempt (0: the upstream was unreachable, or
// the connection served).
func (u *Upstream) backoff(attempt int) time.Duration {
	d := u.opts.BackoffMin
	for i := 1; i < attempt && d < u.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, u.opts.BackoffMax)
	// Jitter up to 25% so a fleet of edges does not reconnect in lockstep.
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}

func (u *Upstream) liveConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

func (u *Upstream) addConn(c *radsec.Conn) {
	u.mu.Lock()
	u.conns = append(u.conns, c)
	u.mu.Unlock()
}

func (u *Upstream) removeConn(c *radsec.Conn) {
	u.mu.Lock()
	for i, x := range u.conns {
		if x == c {
			u.conns = append(u.conns[:i], u.conns[i+1:]...)
			break
		}
	}
	u.mu.Unlock()
}

// dial resolves the upstream (re-resolving on every reconnect), picks the next address, and
// completes TCP and the mutually authenticated TLS handshake. reached says some TCP connect
// succeeded.
func (u *Upstream) dial(ctx context.Context) (c *radsec.Conn, reached bool, err error) {
	targets, err := u.resolve(ctx)
	if err != nil {
		return nil, false, err
	}
	u.mu.Lock()
	seq := u.dialSeq
	u.dialSeq++
	u.mu.Unlock()
	var lastErr error
	// Spread connections over the addresses returned, starting where the last dial left off.
	for i := range targets {
		t := targets[(int(seq)+i)%len(targets)]
		c, connected, err := u.dialTarget(ctx, t)
		reached = reached || connected
		if err == nil {
			return c, true, nil
		}
		lastErr = err
		u.dialFailed(t.Addr, err)
	}
	return nil, reached, lastErr
}

// dialLogInterval is how often "upstream dial failed" is logged for one peer while its attempts
// keep failing; the line then carries how many were not logged ("suppressed").
const dialLogInterval = 30 * time.Second

func (u *Upstream) dialFailed(peer netip.AddrPort, err error) {
	if u.dialLog == nil {
		u.logger.Warn("upstream dial failed", "upstream", u.opts.Name, "peer", peer, "err", err)
		return
	}
	u.dialLog.logFrom(u.logger, slog.LevelWarn, "dial", peer.String(), "upstream dial failed", time.Now(),
		"upstream", u.opts.Name, "peer", peer, "err", err)
}

// connectAttempt bounds one TCP connect. Linux retransmits a lost SYN only after 1 s, then 3 s and
// 7 s, so a connect started while the link was cut would notice the link is back seconds late; a
// fresh attempt every second sends its SYN at once.
const connectAttempt = time.Second

func (u *Upstream) resolve(ctx context.Context) ([]Target, error) {
	if ip, err := netip.ParseAddr(u.opts.Host); err == nil {
		return []Target{{Addr: netip.AddrPortFrom(ip.Unmap(), u.opts.Port), Host: u.opts.Host}}, nil
	}
	if u.pool.opts.Resolver == nil {
		return nil, fmt.Errorf("proxy: upstream %q: host name %q needs a resolver", u.opts.Name, u.opts.Host)
	}
	targets, err := u.pool.opts.Resolver.Resolve(ctx, u.opts.Host, u.opts.Port, u.opts.SRV)
	if err != nil && len(targets) > 0 {
		u.logger.Warn("upstream resolution failed, using last good addresses", "upstream", u.opts.Name, "err", err)
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("proxy: resolve %s: %w", u.opts.Host, err)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("proxy: resolve %s: no addresses", u.opts.Host)
	}
	return targets, nil
}

// serverName is the reference identity the upstream's certificate is checked against: the
// configured name, never a name learnt from unauthenticated DNS (RFC 6125 §6, RFC 7585 §3.4),
// unless VerifySRVTarget opts in.
func (u *Upstream) serverName(t Target) string {
	switch {
	case u.opts.ServerName != "":
		return u.opts.ServerName
	case u.opts.VerifySRVTarget && t.Host != "":
		return t.Host
	}
	return u.opts.Host
}

func (u *Upstream) dialTarget(ctx context.Context, t Target) (*radsec.Conn, bool, error) {
	cfg := u.opts.TLS.Clone()
	cfg.ServerName = u.serverName(t)
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	dctx, cancel := context.WithTimeout(ctx, u.opts.DialTimeout)
	defer cancel()
	d := u.dialer()
	if u.opts.Source.IsValid() && u.opts.Source.Unmap().Is4() != t.Addr.Addr().Unmap().Is4() {
		return nil, false, fmt.Errorf("proxy: upstream %q: source %s cannot reach %s", u.opts.Name, u.opts.Source, t.Addr)
	}
	raw, err := d.DialContext(dctx, "tcp", net.JoinHostPort(t.Addr.Addr().String(), strconv.Itoa(int(t.Addr.Port()))))
	if err != nil {
		return nil, false, err
	}
	raw.(*net.TCPConn).SetNoDelay(true)
	// Close with a reset, also when the process dies: a socket the kernel kept after a dead link
	// would deliver its Accounting-Requests after the spool had replayed them and their successors
	// (see sockio.Abort). What such a close discards was never acknowledged, so it is retried.
	raw.(*net.TCPConn).SetLinger(0)
	nc := radsec.Client(raw, cfg)
	if err := nc.HandshakeContext(dctx); err != nil {
		raw.Close()
		// A handshake that timed out met a link that stopped carrying packets after TCP
		// connected (a middlebox in front of a blackhole): pace it like an unreachable upstream.
		// One that failed met an upstream that refused us: back off.
		var ne net.Error
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
		return nil, !timedOut, err
	}
	if err := radsec.CheckNegotiated(radsec.VersionOf(cfg), nc.ConnectionState()); err != nil {
		// RFC 9765: a client that requires RADIUS/1.1 closes a connection whose server answered
		// no "radius/1.1". Requests meanwhile go to the next upstream or the local fallback.
		raw.Close()
		u.versionRefused.Add(1)
		u.logger.Warn("upstream connection refused: radius version", "upstream", u.opts.Name, "peer", t.Addr, "err", err,
			"hint", "the upstream does not offer RADIUS/1.1 (ALPN radius/1.1); set radius_version: allow, or enable it there")
		return nil, true, fmt.Errorf("proxy: upstream %q: %w", u.opts.Name, err)
	}
	u.mu.Lock()
	u.addr = t.Addr
	u.mu.Unlock()
	var requests func(packet.Packet, radsec.ReplyFunc)
	if da := u.pool.opts.DynAuth; da != nil {
		conn, name, secret := u.pool.connSeq.Add(1), u.opts.Name, []byte(u.opts.Secret)
		requests = func(p packet.Packet, reply radsec.ReplyFunc) { da.ServeUpstream(name, conn, secret, p, reply) }
	}
	return radsec.NewConn(nc, radsec.ConnOptions{
		Requests:       requests,
		Secret:         u.opts.Secret,
		DeadAfter:      u.opts.DeadAfter,
		StatusInterval: u.opts.StatusInterval,
		StallAfter:     u.opts.StallAfter,
		Now:            u.pool.opts.Now,
		Logger:         u.logger,
		Observer:       connObserver{u},
		Cork:           u.pool.opts.Cork,
	}), true, nil
}

// dialer makes the TCP connections: keepalive, the connect attempt bound, and the configured
// source address and device.
func (u *Upstream) dialer() net.Dialer {
	d := net.Dialer{KeepAlive: 15 * time.Second, Timeout: min(connectAttempt, u.opts.DialTimeout)}
	if u.opts.Source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: u.opts.Source.Unmap().AsSlice()}
	}
	if u.opts.BindDevice != "" {
		d.Control = sockio.BindToDevice(u.opts.BindDevice)
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
