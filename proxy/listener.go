package proxy

import (
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
// a secondary RadSec tunnel to the edge). It is identified by source address and, when CertNames is
// set, by a name in its certificate.
type RadSecPeer struct {
	Client
	// CertNames, if set, lists names one of which the peer certificate must carry (SAN DNS, SAN
	// email, SAN URI or, when it has no SAN, the subject CN).
	CertNames []string
}

// ListenerOptions configure the RadSec listener.
type ListenerOptions struct {
	Addrs []string // e.g. ["0.0.0.0:2083", "[::]:2083"]
	// TLS must carry the server certificate and ClientCAs; client certificates are always required
	// and verified (RFC 6614 §2.3 mutual authentication). GetConfigForClient/GetCertificate make
	// reloads apply to new connections.
	TLS              *tls.Config
	Peers            []RadSecPeer
	HandshakeTimeout time.Duration // default 10s
	Logger           *slog.Logger
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
	return nil
}

// Listener accepts RadSec connections and feeds their requests into the same path as UDP.
type Listener struct {
	opts   ListenerOptions
	server *Server
	peers  atomic.Pointer[peerTable]
	tls    atomic.Pointer[tls.Config]
	lns    []net.Listener
	connID atomic.Uint64

	mu         sync.Mutex
	closeConns context.CancelFunc
	conns      sync.WaitGroup
}

type peerTable struct {
	table *ClientTable
	names map[*Client][]string
}

// NewListener creates the listener.
func NewListener(o ListenerOptions, s *Server) (*Listener, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{opts: o, server: s}
	l.tls.Store(o.TLS)
	if err := l.SetPeers(o.Peers); err != nil {
		return nil, err
	}
	return l, nil
}

// SetPeers installs a new peer list (reload); established connections keep their identity.
func (l *Listener) SetPeers(peers []RadSecPeer) error {
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
	pt := &peerTable{table: t, names: map[*Client][]string{}}
	for i, c := range t.All() {
		pt.names[c] = peers[i].CertNames
	}
	l.peers.Store(pt)
	return nil
}

// SetTLS installs a new TLS configuration (reload) for connections accepted from now on.
func (l *Listener) SetTLS(cfg *tls.Config) {
	if cfg != nil {
		l.tls.Store(cfg)
	}
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

func (l *Listener) serve(ctx context.Context, nc net.Conn) {
	src := nc.RemoteAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	pt := l.peers.Load()
	client := pt.table.Lookup(src.Addr())
	if client == nil {
		nc.Close()
		l.server.drop(DropUnknownClient, nil, src, errors.New("radsec connection from an unknown address"))
		return
	}
	tc := radsec.Server(nc, l.tls.Load())
	hctx, cancel := context.WithTimeout(ctx, l.opts.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		tc.Close()
		l.opts.Logger.Warn("radsec handshake failed", "peer", src, "nas", client.Name, "err", err)
		return
	}
	state := tc.ConnectionState()
	if len(state.PeerCertificates) == 0 || !certMatches(state.PeerCertificates[0], pt.names[client]) {
		tc.Close()
		l.opts.Logger.Warn("radsec peer certificate name not allowed", "peer", src, "nas", client.Name,
			"want", strings.Join(pt.names[client], ","))
		return
	}
	id := l.connID.Add(1)
	l.opts.Logger.Info("radsec peer connected", "peer", src, "nas", client.Name, "tls", tls.VersionName(state.Version))
	var w ResponseWriter // the stream's, built on its first request
	err = radsec.ServeConn(ctx, tc, radsec.ServeOptions{Cork: l.server.opts.Cork}, func(p packet.Packet, reply radsec.ReplyFunc) {
		if w == nil {
			w = newStreamWriter(client, src, id, reply)
		}
		l.server.Accept(w, p)
	})
	l.opts.Logger.Info("radsec peer disconnected", "peer", src, "nas", client.Name, "err", err)
}

// certMatches reports whether the certificate carries one of names (any name when names is empty).
func certMatches(c *x509.Certificate, names []string) bool {
	if len(names) == 0 {
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
