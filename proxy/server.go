package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// Port says which kinds of request a listener takes (RFC 2865 §3, RFC 2866 §3, RFC 5997).
type Port uint8

const (
	PortAuth   Port = iota // Access-Request, Status-Server
	PortAcct               // Accounting-Request, Status-Server
	PortRadSec             // both, on one TLS stream (RFC 6614 §2.1)
)

func (p Port) accepts(c packet.Code) bool {
	switch c {
	case packet.CodeStatusServer:
		return true
	case packet.CodeAccessRequest:
		return p != PortAcct
	case packet.CodeAccountingRequest:
		return p != PortAuth
	}
	return false
}

// Handler takes validated requests from the front door. Each request it is given must end in
// exactly one Request.Reply or Request.Drop.
type Handler interface {
	ServeRADIUS(req *Request)
}

// ServerOptions configure the RADIUS front door.
type ServerOptions struct {
	AuthAddrs []string // default [":1812"]
	AcctAddrs []string // default [":1813"]
	// Readers is the number of goroutines reading each UDP socket. Default 1: a reader takes
	// everything queued on the socket in one recvmmsg, and further readers of the same socket only
	// take turns at its read lock, each turn waking the other (measured: 25-30 % more CPU per
	// request). Work that takes long runs on goroutines of its own (see Router).
	Readers int
	// Sockets is how many UDP sockets each listen address gets, bound with SO_REUSEPORT so the
	// kernel spreads the NASes over them, each with its own reader(s): the work a reader does
	// inline (local MAB and PAP answers, see Router) then uses more than one core. Default 0:
	// one per CPU (GOMAXPROCS) for each authentication address, steered by Spread, and one for
	// each accounting address. A value set applies to both, spread by the kernel's hash.
	Sockets int
	// Spread, if set, says whether the authentication sockets of the default Sockets should all
	// be read (true: survivability answers on the readers, so each CPU takes a share) or whether
	// the kernel should deliver every datagram to the first socket of each group (false: the
	// proxied path is cheapest with one reader, whose batches are largest; docs/performance.md).
	// It is asked when Listen binds and every second while Run runs. nil: always spread.
	Spread func() bool
	// SplitBatch, when at least 2: a batch of at least this many datagrams read from an
	// authentication socket is shared with a helper goroutine (see splitter), so the requests
	// answered on the reader use a second core once the reader falls behind. Helpers: one per CPU
	// beyond the first, at most one per authentication socket reader. Default 0, never: on the
	// 2-core lab machine, where the load generator takes the other core, sharing cost 4-6 µs of
	// CPU per local answer and gained no throughput (bench/survival BenchmarkLocalMABClosed).
	SplitBatch int
	// DuplicateWindow is how long an answer is kept for retransmissions (RFC 5080 §2.2.2). Default 10s.
	DuplicateWindow time.Duration
	// DuplicateCacheSize bounds how many requests the duplicate cache remembers, so its memory is
	// fixed whatever the request rate (about 230 bytes each with a 40-byte answer, BenchmarkDupCache in
	// proxy/dedup_test.go). When it is full the oldest entry goes first, counted in
	// Stats.DuplicateEvicted if its window had not passed. Default DefaultDuplicateCacheSize.
	DuplicateCacheSize int
	// RequestTimeout is each request's budget for an upstream answer before the Fallback gets it;
	// keep it inside the NAS's retransmit window. Default 4s.
	RequestTimeout time.Duration
	// Cork, if set, batches the answers sent while a burst of work is under way (see sockio). Give
	// the Pool the same one so that requests forwarded and answers sent share the bursts.
	Cork *sockio.Cork
	// Stats are the request path's counters, shared with the Handler (the Router counts what it
	// forwards into the same Stats), so the Handler can be built before the server. nil: the
	// server's own.
	Stats  *Stats
	Logger *slog.Logger
	Now    func() time.Time
}

// The front door's defaults (ServerOptions); edge/config reads them rather than repeating them.
const (
	DefaultRequestTimeout  = 4 * time.Second
	DefaultDuplicateWindow = 10 * time.Second
)

// MaxSockets bounds ServerOptions.Sockets.
const MaxSockets = 64

// readBatch is how many datagrams one reader takes from its socket per system call.
const readBatch = 32

// Validate checks the options before any socket is bound.
func (o *ServerOptions) Validate() error {
	for _, a := range append(append([]string{}, o.AuthAddrs...), o.AcctAddrs...) {
		if _, err := netip.ParseAddrPort(a); err != nil {
			if _, _, err2 := net.SplitHostPort(a); err2 != nil {
				return fmt.Errorf("proxy: listen address %q: %w", a, err)
			}
		}
	}
	if o.SplitBatch != 0 && (o.SplitBatch < 2 || o.SplitBatch > readBatch) {
		return fmt.Errorf("proxy: split batch %d is outside 2..%d (0: never)", o.SplitBatch, readBatch)
	}
	if o.Sockets < 0 || o.Sockets > MaxSockets {
		return fmt.Errorf("proxy: %d sockets per address is outside 1..%d", o.Sockets, MaxSockets)
	}
	if o.DuplicateWindow < 0 || o.RequestTimeout < 0 {
		return errors.New("proxy: negative duration")
	}
	if o.DuplicateCacheSize != 0 && (o.DuplicateCacheSize < minDuplicateCacheSize || o.DuplicateCacheSize > maxDuplicateCacheSize) {
		return fmt.Errorf("proxy: duplicate cache size %d is outside %d..%d", o.DuplicateCacheSize, minDuplicateCacheSize, maxDuplicateCacheSize)
	}
	return nil
}

func (o *ServerOptions) setDefaults() {
	if o.AuthAddrs == nil {
		o.AuthAddrs = []string{":1812"}
	}
	if o.AcctAddrs == nil {
		o.AcctAddrs = []string{":1813"}
	}
	if o.Readers <= 0 {
		o.Readers = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.DuplicateCacheSize == 0 {
		o.DuplicateCacheSize = DefaultDuplicateCacheSize
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Stats == nil {
		o.Stats = new(Stats)
	}
}

// Server is the RADIUS front door: UDP listeners plus the validation every request goes through,
// whichever transport brought it.
type Server struct {
	opts    ServerOptions
	clients atomic.Pointer[ClientTable]
	handler Handler
	stats   *Stats
	dups    *dupCache
	limiter *logLimiter

	statsMu  sync.Mutex
	nasStats map[string]*NASStats

	socks []udpSock
	// groups holds one member of each authentication SO_REUSEPORT group of the default Sockets
	// (ServerOptions.Spread steers them); spread is whether they are spread now. Listen sets
	// both and steers first; then they belong to Run's housekeeping goroutine.
	groups    []*net.UDPConn
	spread    bool
	stopping  atomic.Bool
	heartbeat atomic.Int64
}

// Heartbeat is when the front door's housekeeping loop last ran; the systemd watchdog is fed only
// while it keeps running.
func (s *Server) Heartbeat() time.Time { return time.Unix(0, s.heartbeat.Load()) }

type udpSock struct {
	conn *net.UDPConn
	udp  *sockio.UDP
	out  *sockio.Sender
	port Port
	// sibling: another socket of the same SO_REUSEPORT group (ServerOptions.Sockets), not listed
	// again by Addrs.
	sibling bool
}

// NewServer creates the front door. Listen binds its sockets; Run serves them.
func NewServer(o ServerOptions, h Handler) (*Server, error) {
	o.setDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:     o,
		handler:  h,
		stats:    o.Stats,
		dups:     newDupCache(o.DuplicateCacheSize, o.DuplicateWindow, o.Now, &o.Stats.DuplicateEvicted),
		limiter:  newLogLimiter(10 * time.Second),
		nasStats: map[string]*NASStats{},
	}
	empty, _ := NewClientTable(nil, nil)
	s.clients.Store(empty)
	return s, nil
}

// Stats returns the request path counters.
func (s *Server) Stats() *Stats { return s.stats }

// NASStats returns the counters kept for a NAS client name, creating them on first use so they
// survive reloads.
func (s *Server) NASStats(name string) *NASStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st, ok := s.nasStats[name]
	if !ok {
		st = new(NASStats)
		s.nasStats[name] = st
	}
	return st
}

// SetClients installs a new client table (start-up and reload). Requests in flight keep the client
// they arrived with.
func (s *Server) SetClients(clients []Client) error {
	t, err := NewClientTable(clients, s.NASStats)
	if err != nil {
		return err
	}
	s.clients.Store(t)
	return nil
}

// Clients returns the current client table.
func (s *Server) Clients() *ClientTable { return s.clients.Load() }

// Listen binds the UDP sockets. It is separate from Run so that start-up fails before anything is
// announced ready, and so tests can bind port 0. When sockets were handed over with UseConn
// (socket activation) the configured addresses are not bound.
func (s *Server) Listen() error {
	if len(s.socks) > 0 {
		return nil
	}
	for _, l := range []struct {
		addrs []string
		port  Port
	}{{s.opts.AuthAddrs, PortAuth}, {s.opts.AcctAddrs, PortAcct}} {
		n := s.opts.Sockets
		if n == 0 && l.port == PortAuth {
			n = min(runtime.GOMAXPROCS(0), MaxSockets)
		}
		for _, a := range l.addrs {
			conns, err := listenUDP(a, max(n, 1))
			if err != nil {
				s.closeSockets()
				return err
			}
			if s.opts.Sockets == 0 && len(conns) > 1 {
				s.groups = append(s.groups, conns[0])
			}
			for i, conn := range conns {
				if err := s.addSock(conn, l.port); err != nil {
					for _, c := range conns[i+1:] {
						c.Close()
					}
					s.closeSockets()
					return err
				}
				s.socks[len(s.socks)-1].sibling = i > 0
			}
		}
	}
	s.spread = true // a group without a program is spread by the kernel's hash
	s.steer()
	return nil
}

// UseConn serves an already bound socket (systemd socket activation, tests).
func (s *Server) UseConn(conn *net.UDPConn, port Port) error { return s.addSock(conn, port) }

func (s *Server) addSock(conn *net.UDPConn, port Port) error {
	u, err := sockio.NewUDP(conn)
	if err != nil {
		conn.Close()
		return fmt.Errorf("proxy: %v: %w", conn.LocalAddr(), err)
	}
	out := sockio.NewSender(u, s.opts.Cork, func(to netip.AddrPort, err error) {
		s.drop(DropSendFailed, nil, to, err)
	})
	s.socks = append(s.socks, udpSock{conn: conn, udp: u, out: out, port: port})
	return nil
}

// Addrs returns the bound addresses, auth first.
func (s *Server) Addrs(port Port) []netip.AddrPort {
	var out []netip.AddrPort
	for _, sk := range s.socks {
		if sk.port == port && !sk.sibling {
			out = append(out, sk.conn.LocalAddr().(*net.UDPAddr).AddrPort())
		}
	}
	return out
}

func listenUDP(addr string, n int) ([]*net.UDPConn, error) {
	network := "udp"
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		if ap.Addr().Is4() {
			network = "udp4"
		} else if ap.Addr().Is6() && !ap.Addr().Is4In6() {
			network = "udp6"
		}
	}
	conns, err := sockio.ListenUDPGroup(network, addr, n)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen %s: %w", addr, err)
	}
	for _, conn := range conns {
		// Bursts of accounting after a NAS reboot arrive faster than a single reader drains them.
		conn.SetReadBuffer(4 << 20)
		conn.SetWriteBuffer(4 << 20)
	}
	return conns, nil
}

func (s *Server) closeSockets() {
	for _, sk := range s.socks {
		sk.conn.Close()
	}
}

// Run serves the sockets until ctx is cancelled. It returns after every reader has exited. The
// sockets stay open so that requests already handed to the Handler can still be answered: the caller
// drains the Handler, then calls Close.
func (s *Server) Run(ctx context.Context) error {
	s.heartbeat.Store(s.opts.Now().UnixNano())
	var sp *splitter
	if n := s.helpers(); n > 0 {
		sp = startSplitter(s, n)
	}
	var wg, readers sync.WaitGroup
	for i := range s.socks {
		for range s.opts.Readers {
			readers.Add(1)
			go func() {
				defer readers.Done()
				s.readLoop(&s.socks[i], sp)
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.dups.sweep(now)
				s.steer()
				s.heartbeat.Store(now.UnixNano())
			}
		}
	}()
	<-ctx.Done()
	s.stopping.Store(true)
	for _, sk := range s.socks {
		// Wake the readers without closing the socket answers still go out on.
		sk.conn.SetReadDeadline(time.Now())
	}
	readers.Wait()
	if sp != nil {
		sp.stop()
	}
	wg.Wait()
	return nil
}

// steer spreads the authentication groups over their sockets, or steers each to its first
// socket, as ServerOptions.Spread says. A datagram that changes socket on the switch (a
// retransmission among them) meets the same duplicate cache, which every socket shares. Where
// the kernel refuses the program (too old for SO_ATTACH_REUSEPORT_CBPF) the groups stay spread
// by its hash, as an explicit listen.sockets is.
func (s *Server) steer() {
	if len(s.groups) == 0 || s.opts.Spread == nil {
		return
	}
	want := s.opts.Spread()
	if want == s.spread {
		return
	}
	to := 0
	if want {
		to = -1
	}
	for _, c := range s.groups {
		if err := sockio.SteerGroup(c, to); err != nil {
			s.opts.Logger.Warn("udp sockets stay spread", "err", err)
			s.groups = nil
			return
		}
	}
	s.spread = want
	if want {
		s.opts.Logger.Debug("udp authentication sockets spread over every reader")
	} else {
		s.opts.Logger.Debug("udp authentication sockets steered to one reader")
	}
}

// helpers is how many splitter helpers Run starts: one per CPU beyond the first, at most one per
// authentication socket reader.
func (s *Server) helpers() int {
	if s.opts.SplitBatch == 0 {
		return 0
	}
	auth := 0
	for _, sk := range s.socks {
		if sk.port == PortAuth {
			auth += s.opts.Readers
		}
	}
	return min(runtime.GOMAXPROCS(0)-1, auth)
}

// Close closes the sockets (after Run has returned and the Handler has drained). Answers still
// held for the end of a burst are sent first.
func (s *Server) Close() {
	for _, sk := range s.socks {
		sk.out.Flush()
	}
	s.closeSockets()
}

// readLoop takes datagrams from the socket a batch at a time and handles each batch as one burst:
// the requests it forwards and the answers it sends leave together at the end of the batch.
func (s *Server) readLoop(sk *udpSock, sp *splitter) {
	batch := sockio.NewBatch(readBatch, packet.MaxLen+1)
	var w udpWriter // one for every datagram; Accept copies it into a request it keeps
	done := make(chan struct{}, 1)
	for {
		if err := sk.udp.Read(batch); err != nil {
			if errors.Is(err, net.ErrClosed) || s.stopping.Load() {
				return
			}
			s.opts.Logger.Warn("udp read failed", "err", err)
			continue
		}
		s.opts.Cork.Begin()
		sp.handle(s, sk, batch.Datagrams(), &w, done)
		s.opts.Cork.End()
	}
}

// acceptBatch runs datagrams read from sk through Accept, w the caller's reusable writer.
func (s *Server) acceptBatch(sk *udpSock, ds []sockio.Datagram, w *udpWriter) {
	for _, d := range ds {
		if len(d.B) > packet.MaxLen {
			// Datagrams above 4096 bytes are not RADIUS (RFC 2865 §3).
			s.stats.Received.Add(1)
			s.drop(DropMalformed, nil, d.Addr, errors.New("datagram above 4096 bytes"))
			continue
		}
		// On a wildcard socket the answer leaves from the address the NAS sent to.
		*w = udpWriter{out: sk.out.From(d.Local), origin: Origin{Port: sk.port, Transport: TransportUDP, Src: d.Addr}}
		s.Accept(w, d.B)
	}
}

// ProxyStateLen is the length of the Proxy-State value the Pool adds to each request it forwards
// (RFC 2865 §5.33); packet.ForwardLen with it says how long a forwarded copy is.
const ProxyStateLen = 8

// acctDelayLen is an Acct-Delay-Time attribute (RFC 2866 §5.2), which a replay of spooled
// accounting adds when the NAS sent none.
const acctDelayLen = 2 + 4

// forwardLen is how long p can become on its way upstream: ForwardRequest's copy (Message-
// Authenticator, Proxy-State and CHAP-Challenge added as needed), and for accounting the
// Acct-Delay-Time a replay from the spool adds.
func forwardLen(p packet.Packet) int {
	n := packet.ForwardLen(p, ProxyStateLen)
	if p.Code() == packet.CodeAccountingRequest && !p.Has(packet.AttrAcctDelayTime) {
		n += acctDelayLen
	}
	return n
}

// Accept runs a datagram or frame through the checks every request gets and hands it on; w says
// where raw came from and answers it. raw may be reused by the caller after Accept returns.
//
// What an upstream would discard is dropped here with a counted reason and never forwarded: a
// malformed EAP packet, EAP without Message-Authenticator, too many attributes, or a request whose
// forwarded copy would exceed 4096 octets.
func (s *Server) Accept(w ResponseWriter, raw []byte) {
	s.stats.Received.Add(1)
	o := w.Origin()
	src := o.Src
	client := o.Client
	if client == nil {
		client = s.clients.Load().Lookup(src.Addr())
	}
	if client == nil {
		s.drop(DropUnknownClient, nil, src, nil)
		return
	}
	now := s.opts.Now()
	st := client.stats
	st.LastSeen.Store(now.UnixNano())
	p, err := packet.Parse(raw)
	if err != nil {
		st.Malformed.Add(1)
		s.drop(DropMalformed, client, src, err)
		return
	}
	code := p.Code()
	if !o.Port.accepts(code) {
		s.drop(DropWrongCode, client, src, fmt.Errorf("%v on this port", code))
		return
	}
	st.Requests.Add(1)
	ma := packet.MAAbsent
	if k := client.maKey; k != nil {
		ma = packet.CheckRequestMAKey(p, k)
	} else {
		ma = packet.CheckRequestMA(p, client.Secret)
	}
	switch ma {
	case packet.MAInvalid:
		st.BadAuthenticator.Add(1)
		s.drop(DropBadAuthenticator, client, src, errors.New("Message-Authenticator does not verify: check the shared secret"))
		return
	case packet.MAAbsent:
		switch {
		case code == packet.CodeStatusServer:
			st.MissingMA.Add(1)
			s.drop(DropStatusWithoutMA, client, src, nil)
			return
		case code == packet.CodeAccessRequest && client.RequireMessageAuthenticator:
			st.MissingMA.Add(1)
			s.drop(DropMissingMA, client, src, errors.New("Access-Request without Message-Authenticator: enable it on the NAS or set require_message_authenticator: false"))
			return
		case p.Has(packet.AttrEAPMessage):
			// RFC 3579 §3.2: silently discarded, whatever the NAS's policy says.
			st.MissingMA.Add(1)
			s.drop(DropEAPWithoutMA, client, src, nil)
			return
		case code == packet.CodeAccessRequest && client.LimitProxyState && p.Has(packet.AttrProxyState):
			st.MissingMA.Add(1)
			s.drop(DropProxyStateWithoutMA, client, src, nil)
			return
		}
	}
	if !packet.CheckRequestAuthenticator(p, client.Secret) {
		st.BadAuthenticator.Add(1)
		s.drop(DropBadAuthenticator, client, src, errors.New("Request Authenticator does not verify: check the shared secret"))
		return
	}

	if code == packet.CodeStatusServer {
		s.answerStatus(p, client, o.Port, w)
		return
	}
	if err := packet.CheckRequest(p); err != nil {
		st.Malformed.Add(1)
		reason := DropMalformed
		switch {
		case errors.Is(err, packet.ErrEAP):
			reason = DropMalformedEAP
		case errors.Is(err, packet.ErrTooManyAttrs):
			reason = DropTooManyAttributes
		}
		s.drop(reason, client, src, err)
		return
	}
	if n := forwardLen(p); n > packet.MaxLen {
		s.drop(DropTooLongToForward, client, src, fmt.Errorf("%d octets, %d once forwarded: above 4096", len(p), n))
		return
	}

	key := dupKey{src: src, conn: o.Stream, id: p.ID()}
	copy(key.auth[:], p.Authenticator())
	e, verdict, cached, again := s.dups.begin(key, now)
	switch verdict {
	case dupInFlight:
		st.Duplicates.Add(1)
		s.stats.Dropped[DropDuplicate].Add(1)
		s.opts.Logger.Debug("retransmission absorbed", "nas", client.Name, "peer", src, "id", p.ID())
		if again != nil {
			again()
		}
		return
	case dupAnswered:
		st.Duplicates.Add(1)
		s.stats.DuplicateAnswered.Add(1)
		s.opts.Logger.Debug("retransmission answered from cache", "nas", client.Name, "peer", src, "id", p.ID())
		w.WriteResponse(cached)
		return
	}

	req := &Request{
		Client:    client,
		Src:       src,
		Transport: o.Transport,
		Packet:    append(packet.Packet(nil), p...),
		Received:  now,
		Deadline:  now.Add(s.opts.RequestTimeout),
		w:         w,
		front:     s,
		dup:       e,
	}
	if uw, ok := w.(*udpWriter); ok {
		// The UDP reader reuses its writer for the next datagram: the request keeps a copy.
		req.uw = *uw
		req.w = &req.uw
	}
	if s.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		// Guarded: the arguments alone would cost allocations on every request.
		s.opts.Logger.Debug("request", "nas", client.Name, "peer", src, "code", code, "id", p.ID(),
			"attrs", packet.Redacted{Packet: p}) // secrets shown by length only
	}
	s.handler.ServeRADIUS(req)
}

// answerStatus answers a NAS's Status-Server (RFC 5997 §3): Access-Accept on the authentication
// port, Accounting-Response on the accounting port. mxedge is alive whether or not its upstreams are.
func (s *Server) answerStatus(p packet.Packet, client *Client, port Port, w ResponseWriter) {
	s.stats.StatusServer.Add(1)
	code := packet.CodeAccessAccept
	if port == PortAcct {
		code = packet.CodeAccountingResponse
	}
	b := packet.NewResponse(nil, p, code)
	resp, err := b.Finish(client.Secret, p.Authenticator())
	if err != nil {
		return
	}
	client.stats.Responses.Add(1)
	w.WriteResponse(resp)
}

// drop counts a request dropped for reason r and logs it through the rate limiter. Lines are
// limited per reason, naming at most a few sources per interval: a NAS the configuration knows by
// its name, an unknown one by its address, so a flood from spoofed addresses logs a bounded number
// of lines (each saying how many were suppressed) while the counter counts every one.
func (s *Server) drop(r DropReason, c *Client, src netip.AddrPort, err error) {
	s.dropAt(slog.LevelWarn, r, c, src, err)
}

// dropAt is drop logging at level.
func (s *Server) dropAt(level slog.Level, r DropReason, c *Client, src netip.AddrPort, err error) {
	s.stats.Dropped[r].Add(1)
	args := []any{"reason", r.String(), "peer", src}
	source := src.Addr().String()
	if c != nil {
		args = append(args, "nas", c.Name)
		source = c.Name
	}
	if err != nil {
		args = append(args, "err", err)
	}
	s.limiter.logFrom(s.opts.Logger, level, r.String(), source, "request dropped", s.opts.Now(), args...)
}
