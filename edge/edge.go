// Package edge wires mxedge's components together: it turns a configuration into a running RADIUS
// front door, RadSec listener and upstream pool, runs them, reloads them without dropping requests,
// and shuts them down in order. It is the only package that knows every component.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/cache"
	"mxedge/edge/config"
	"mxedge/edge/control"
	"mxedge/edge/events"
	"mxedge/edge/metrics"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/resolve"
	"mxedge/proxy/sockio"
	"mxedge/survivability"
	"mxedge/survivability/localeap"
	"mxedge/survivability/spool"
)

// Options configure an Edge beyond the file.
type Options struct {
	Logger *slog.Logger
	// ShutdownGrace bounds how long requests in flight may take to finish on shutdown and how long
	// an old upstream pool may drain after a reload. Default 5s.
	ShutdownGrace time.Duration
	// Sockets are sockets passed by the service manager (systemd socket activation, LISTEN_FDS):
	// UDP sockets serve RADIUS instead of the configured listen addresses — named "auth" or "acct"
	// (FileDescriptorName=), else accounting when bound to port 1813 and authentication otherwise —
	// and TCP sockets serve RadSec.
	Sockets []*os.File
	// Fallback and Observer plug survivability and cache learning into the request path.
	Fallback proxy.Fallback
	Observer proxy.Observer
	// MetricsAddr is where Prometheus metrics are served (`mxedge run` passes metrics.DefaultAddr,
	// a loopback address); "" serves none (tests, mxedge check).
	MetricsAddr string
}

// Edge is a running mxedge.
type Edge struct {
	opts     Options
	log      *slog.Logger
	server   *proxy.Server
	cork     *sockio.Cork // shared by the front door and every pool, so bursts span both
	router   *proxy.Router
	listener *proxy.Listener
	resolver *resolve.Resolver
	cache    *cache.Store
	health   *survivability.Health
	control  *control.Server
	spool    *spool.Spool
	acct     *survivability.Accounting
	localEAP *localeap.Handler
	checker  *pki.Checker
	certs    atomic.Pointer[[]pki.NamedCert]
	events   *events.Bus
	metrics  *metrics.Server

	mu       sync.Mutex
	cfg      *config.Config
	poolStop context.CancelFunc
	poolDone chan struct{}
	started  time.Time
}

// New builds the components from a validated configuration. Nothing is bound or dialed yet.
func New(cfg *config.Config, o Options) (*Edge, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 5 * time.Second
	}
	b := cfg.Built()
	e := &Edge{opts: o, log: o.Logger, cfg: cfg, events: events.New(events.Options{})}
	certs := loadCerts(b.Files)
	e.certs.Store(&certs)
	if o.MetricsAddr != "" {
		m, err := metrics.New(metrics.Options{Addr: o.MetricsAddr, Snapshot: e.metricsSnapshot, Events: e.events,
			Certificates: e.certificates, Logger: o.Logger})
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		e.metrics = m
	}

	res, err := resolve.New(resolve.Options{Servers: b.DNS.Servers, Timeout: b.DNS.Timeout, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.resolver = res
	e.health = survivability.NewHealth(survivability.HealthOptions{FailbackProbes: b.Survival.FailbackProbes, Logger: o.Logger,
		OnChange: func(_, to survivability.Mode, _ string) {
			if to == survivability.ModeUp {
				e.mu.Lock()
				a := e.acct
				e.mu.Unlock()
				if a != nil {
					a.Kick()
				}
			}
		}})
	if b.Survival.Enabled && o.Fallback == nil {
		var eap survivability.EAPHandler
		if t := b.Survival.EAPTLS; t != nil {
			h, err := e.newLocalEAP(b)
			if err != nil {
				return nil, err
			}
			eap = h
		}
		eng, err := survivability.NewEngine(survivability.EngineOptions{
			EAP:              eap,
			Health:           e.health,
			Cache:            cacheRef{e},
			DefaultMABVLAN:   b.Survival.DefaultMABVLAN,
			DefaultDot1XVLAN: b.Survival.DefaultDot1XVLAN,
			FailClosed:       b.Survival.FailClosed,
			Accounting:       spoolRef{e},
			Events:           e.localEvent,
			Logger:           o.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		o.Fallback = eng
	}
	e.opts = o

	e.cork = new(sockio.Cork)
	so := b.Server
	so.Logger, so.Cork = o.Logger, e.cork
	// The router needs the server's counters and the server needs the router as its handler.
	pool, err := e.newPool(b)
	if err != nil {
		return nil, err
	}
	ro := b.Router
	ro.Logger, ro.Fallback, ro.Timeouts = o.Logger, o.Fallback, e.health
	srv, err := proxy.NewServer(so, nil)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.router = proxy.NewRouter(ro, pool, srv.Stats())
	srv.SetHandler(e.router)
	if err := srv.SetClients(b.Clients); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.server = srv
	if b.Listener != nil {
		lo := *b.Listener
		lo.Logger = o.Logger
		l, err := proxy.NewListener(lo, srv)
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		e.listener = l
	}
	return e, nil
}

func (e *Edge) newPool(b *config.Built) (*proxy.Pool, error) {
	po := b.Pool
	po.Logger, po.Cork = e.log, e.cork
	po.Resolver = resolverAdapter{e.resolver}
	po.Health = e.health
	p, err := proxy.NewPool(po)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return p, nil
}

// Server returns the front door (tests, status).
func (e *Edge) Server() *proxy.Server { return e.server }

// Router returns the router (status).
func (e *Edge) Router() *proxy.Router { return e.router }

// Listener returns the RadSec listener, or nil.
func (e *Edge) Listener() *proxy.Listener { return e.listener }

// Cache returns the client cache (nil before Listen).
func (e *Edge) Cache() *cache.Store { return e.cache }

// Listen opens the client cache and binds every socket; errors here happen before the service
// reports ready. (The cache is opened here, not in New, because `mxedge check` builds an Edge while
// the running daemon holds the cache's file lock.)
func (e *Edge) Listen() error {
	co := e.cfg.Built().Cache
	co.Logger = e.log
	store, err := cache.Open(co)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.cache = store
	var obs proxy.Observer = answerObserver{e: e, learner: survivability.NewLearner(store, e.log)}
	if e.opts.Observer != nil {
		obs = observers{obs, e.opts.Observer}
	}
	e.router.SetObserver(obs)
	b := e.cfg.Built()
	so := b.Survival.Spool
	so.Logger = e.log
	sp, err := spool.Open(so)
	if err != nil {
		store.Close()
		return fmt.Errorf("edge: %w", err)
	}
	e.spool = sp
	e.mu.Lock()
	e.acct = survivability.NewAccounting(survivability.AccountingOptions{
		Spool: sp, Forward: forwarder{e}, Clients: e.clientByName, Health: e.health,
		Timeout: b.Server.RequestTimeout, Logger: e.log,
	})
	e.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(b.Control), 0o750); err != nil {
		store.Close()
		sp.Close()
		return fmt.Errorf("edge: control socket directory: %w", err)
	}
	ctl, err := control.NewServer(control.Options{Path: b.Control, Cache: store, Logger: e.log, Status: func() any { return e.Status() },
		Events: e.events, Clients: e.nasClients})
	if err == nil {
		err = ctl.Listen()
	}
	if err != nil {
		store.Close()
		sp.Close()
		return fmt.Errorf("edge: %w", err)
	}
	e.control = ctl
	if err := e.useSockets(); err != nil {
		store.Close()
		sp.Close()
		return err
	}
	if err := e.server.Listen(); err != nil {
		store.Close()
		sp.Close()
		return err
	}
	if e.metrics != nil {
		if err := e.metrics.Listen(); err != nil {
			store.Close()
			sp.Close()
			return fmt.Errorf("edge: %w", err)
		}
	}
	if e.listener != nil {
		if err := e.listener.Listen(); err != nil {
			store.Close()
			sp.Close()
			return err
		}
	}
	return nil
}

// Status is the daemon's state for `mxedge status` and the control socket.
type Status struct {
	Mode       string                 `json:"mode"`
	Since      time.Time              `json:"since"`
	Started    time.Time              `json:"started"`
	Upstreams  []proxy.UpstreamStatus `json:"upstreams"`
	Cache      cache.Stats            `json:"cache"`
	Received   uint64                 `json:"received"`
	Forwarded  uint64                 `json:"forwarded"`
	Answered   uint64                 `json:"upstream_answered"`
	Local      uint64                 `json:"local_decisions"`
	Dropped    map[string]uint64      `json:"dropped"`
	Certs      []CertExpiry           `json:"certificates"`
	Spool      int                    `json:"spool_depth"`
	Quarantine int                    `json:"spool_quarantined,omitempty"`
	Listeners  []string               `json:"listeners"`
	Revocation []pki.SourceStatus     `json:"revocation,omitempty"`
}

// Status returns a snapshot of the running edge.
func (e *Edge) Status() Status {
	st := e.server.Stats()
	s := Status{
		Mode: e.health.Mode().String(), Since: e.health.Since(), Started: e.started,
		Received: st.Received.Load(), Forwarded: st.Forwarded.Load(), Answered: st.UpstreamAnswered.Load(),
		Local: st.Fallback.Load(), Dropped: map[string]uint64{},
	}
	for _, u := range e.router.Pool().Upstreams() {
		s.Upstreams = append(s.Upstreams, u.Status())
	}
	if e.cache != nil {
		s.Cache = e.cache.Stats()
	}
	if e.spool != nil {
		s.Spool = e.spool.Len()
		s.Quarantine = e.spool.Stats().QuarantineDepth
	}
	if e.checker != nil {
		s.Revocation = e.checker.Status()
	}
	s.Certs = e.CertExpiries(time.Now())
	for _, a := range e.server.Addrs(proxy.PortAuth) {
		s.Listeners = append(s.Listeners, "radius-auth udp "+a.String())
	}
	for _, a := range e.server.Addrs(proxy.PortAcct) {
		s.Listeners = append(s.Listeners, "radius-acct udp "+a.String())
	}
	if e.listener != nil {
		for _, a := range e.listener.Addrs() {
			s.Listeners = append(s.Listeners, "radsec tcp "+a.String())
		}
	}
	for _, r := range proxy.DropReasons() {
		if n := st.Dropped[r].Load(); n > 0 {
			s.Dropped[r.String()] = n
		}
	}
	return s
}

// Health returns the survivability state machine.
func (e *Edge) Health() *survivability.Health { return e.health }

// cacheRef lets the decision engine, built before the cache is opened, read it.
type cacheRef struct{ e *Edge }

func (c cacheRef) Lookup(identity, mac string) (cache.Record, bool, error) {
	if c.e.cache == nil {
		return cache.Record{}, false, nil
	}
	return c.e.cache.Lookup(identity, mac)
}

// newLocalEAP builds the local EAP-TLS server and its revocation checker.
func (e *Edge) newLocalEAP(b *config.Built) (*localeap.Handler, error) {
	t := b.Survival.EAPTLS
	var checker *pki.Checker
	if len(t.CRLFiles) > 0 || t.OCSP {
		// The last good CRL/OCSP answers are kept on disk beside the cache, so a restart without
		// network still has revocation data.
		dir := filepath.Join(filepath.Dir(b.Cache.Path), "revocation")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("edge: revocation cache: %w", err)
		}
		c, err := pki.NewChecker(pki.CheckerOptions{CacheDir: dir, CRLFiles: t.CRLFiles, Issuers: t.Issuers, OCSP: t.OCSP, Policy: t.Policy, Logger: e.log})
		if err != nil {
			return nil, fmt.Errorf("edge: revocation: %w", err)
		}
		checker = c
		e.checker = c
	}
	h, err := localeap.New(localeap.Options{
		Certificates:  []tls.Certificate{t.Certificate},
		MinVersion:    t.MinVersion,
		FragmentSize:  t.FragmentSize,
		Verify:        pki.VerifyOptions{Roots: t.Roots, Revocation: checker},
		IdentityOrder: t.IdentityOrder,
		Lookup: func(identity, mac string) (cache.Record, bool) {
			rec, ok, _ := cacheRef{e}.Lookup(identity, mac)
			return rec, ok
		},
		DefaultVLAN: b.Survival.DefaultDot1XVLAN,
		FailClosed:  b.Survival.FailClosed,
		VendorReply: survivability.DefaultVLANAttrs,
		Events:      e.localEAPEvent,
		Logger:      e.log,
	})
	if err != nil {
		return nil, fmt.Errorf("edge: local EAP-TLS: %w", err)
	}
	e.localEAP = h
	return h, nil
}

// spoolRef lets the decision engine, built before the spool is opened, use it.
type spoolRef struct{ e *Edge }

func (s spoolRef) acct() *survivability.Accounting {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.e.acct
}

func (s spoolRef) Admit(req *proxy.Request) {
	if a := s.acct(); a != nil {
		a.Admit(req)
	}
}

func (s spoolRef) Account(req *proxy.Request) (packet.Packet, bool, error) {
	a := s.acct()
	if a == nil {
		return nil, false, errors.New("edge: accounting spool not open")
	}
	return a.Account(req)
}

// forwarder replays through whatever upstream pool is current.
type forwarder struct{ e *Edge }

func (f forwarder) Forward(req *proxy.Request, done func(proxy.Result)) {
	f.e.router.Pool().Forward(req, done)
}

// clientByName finds a NAS client of the running configuration.
func (e *Edge) clientByName(name string) *proxy.Client {
	for _, c := range e.server.Clients().All() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// CertExpiry is one configured certificate's expiry, for status and metrics.
type CertExpiry struct {
	File     string    `json:"file"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	Days     int       `json:"days_left"`
}

// Files are the certificate, key and CA files the running configuration uses (watched for changes).
func (e *Edge) Files() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg.Built().Files
}

// loadCerts reads every certificate in the configuration's certificate and CA files, once per
// configuration (start-up and each reload, which also follows file changes).
func loadCerts(files []string) []pki.NamedCert {
	var out []pki.NamedCert
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		certs, err := pki.LoadCertificates(f)
		if err != nil {
			continue // a key file, or unreadable: check and reload report that
		}
		for _, c := range certs {
			out = append(out, pki.NamedCert{Name: f, Cert: c})
		}
	}
	return out
}

// CertExpiries lists every certificate in the configured certificate and CA files.
func (e *Edge) CertExpiries(now time.Time) []CertExpiry {
	var out []CertExpiry
	for _, c := range *e.certs.Load() {
		out = append(out, CertExpiry{File: c.Name, Subject: c.Cert.Subject.String(), NotAfter: c.Cert.NotAfter,
			Days: int(c.Cert.NotAfter.Sub(now).Hours() / 24)})
	}
	return out
}

// watchExpiry warns at 30, 7 and 1 days before any configured certificate or CA expires (and when
// it has), once per threshold, checking every hour.
func (e *Edge) watchExpiry(ctx context.Context) {
	warned := map[string]time.Duration{}
	check := func() {
		for _, w := range pki.ExpiryWarnings(*e.certs.Load(), time.Now()) {
			key := w.Name + "|" + w.Subject
			if t, ok := warned[key]; ok && t == w.Threshold {
				continue
			}
			warned[key] = w.Threshold
			msg := "certificate expires soon: renew it"
			if w.Expired {
				msg = "certificate expired: connections using it fail until it is replaced"
			}
			e.log.Log(ctx, w.Level, msg, "file", w.Name, "subject", w.Subject, "not_after", w.NotAfter.Format(time.RFC3339),
				"dur", w.Remaining.Round(time.Hour))
		}
	}
	check()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// Spool returns the accounting spool (nil before Listen).
func (e *Edge) Spool() *spool.Spool { return e.spool }

// useSockets hands sockets from the service manager to the front door and the RadSec listener.
func (e *Edge) useSockets() error {
	for _, f := range e.opts.Sockets {
		if pc, err := net.FilePacketConn(f); err == nil {
			udp, ok := pc.(*net.UDPConn)
			if !ok {
				pc.Close()
				return fmt.Errorf("edge: activated socket %q is not UDP", f.Name())
			}
			port := proxy.PortAuth
			if f.Name() == "acct" || (f.Name() != "auth" && udp.LocalAddr().(*net.UDPAddr).Port == 1813) {
				port = proxy.PortAcct
			}
			if err := e.server.UseConn(udp, port); err != nil {
				return fmt.Errorf("edge: activated socket %q: %w", f.Name(), err)
			}
			e.log.Info("using activated socket", "file", f.Name(), "peer", udp.LocalAddr().String())
			continue
		}
		ln, err := net.FileListener(f)
		if err != nil {
			return fmt.Errorf("edge: activated socket %q: %w", f.Name(), err)
		}
		if e.listener == nil {
			ln.Close()
			return fmt.Errorf("edge: activated TCP socket %q but no radsec listener is configured", f.Name())
		}
		e.listener.UseListener(ln)
		e.log.Info("using activated socket", "file", f.Name(), "peer", ln.Addr().String())
	}
	return nil
}

// observers fans one answer out to several observers.
type observers []proxy.Observer

func (os observers) Observe(req *proxy.Request, res proxy.Result) {
	for _, o := range os {
		o.Observe(req, res)
	}
}

// AuthAddrs returns the bound authentication addresses.
func (e *Edge) AuthAddrs() []netip.AddrPort { return e.server.Addrs(proxy.PortAuth) }

// Run serves until ctx ends, then shuts down in order: stop taking requests, let those in flight
// finish (bounded by ShutdownGrace), then close the upstream connections. ready is called once the
// first upstream connections have settled (or failed once).
func (e *Edge) Run(ctx context.Context, ready func()) error {
	e.mu.Lock()
	e.started = time.Now()
	e.mu.Unlock()
	cacheCtx, stopCache := context.WithCancel(context.Background())
	cacheDone := make(chan struct{})
	go func() { defer close(cacheDone); e.cache.Run(cacheCtx) }()
	acctCtx, stopAcct := context.WithCancel(context.Background())
	acctDone := make(chan struct{})
	go func() { defer close(acctDone); e.acct.Run(acctCtx) }()
	bgCtx, stopBg := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	if e.localEAP != nil {
		bg.Add(1)
		go func() { defer bg.Done(); e.localEAP.Run(bgCtx) }()
	}
	if e.metrics != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := e.metrics.Run(bgCtx); err != nil {
				e.log.Error("metrics stopped", "err", err)
			}
		}()
	}
	if e.checker != nil {
		bg.Add(1)
		go func() { defer bg.Done(); e.checker.Run(bgCtx) }()
	}
	bg.Add(1)
	go func() { defer bg.Done(); e.watchExpiry(bgCtx) }()
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan struct{})
	go func() { defer close(ctlDone); e.control.Run(ctlCtx) }()
	e.startPool(e.router.Pool())
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	e.router.Pool().WaitReady(wctx)
	cancel()

	frontCtx, stopFront := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.server.Run(frontCtx) }()
	if e.listener != nil {
		wg.Add(1)
		go func() { defer wg.Done(); e.listener.Run(frontCtx) }()
	}
	b := e.cfg.Built()
	e.log.Info("mxedge started", "auth", b.Server.AuthAddrs, "acct", b.Server.AcctAddrs,
		"upstreams", len(b.Pool.Upstreams), "clients", len(b.Clients))
	if ready != nil {
		ready()
	}
	<-ctx.Done()

	e.log.Info("shutting down", "grace", e.opts.ShutdownGrace)
	stopUDP := time.Now()
	stopFront()
	wg.Wait()
	gctx, cancel := context.WithTimeout(context.Background(), e.opts.ShutdownGrace)
	err := e.router.Wait(gctx)
	cancel()
	if err != nil {
		e.log.Warn("shutdown grace expired with requests in flight", "grace", e.opts.ShutdownGrace)
	}
	e.server.Close()
	if e.listener != nil {
		e.listener.Close()
	}
	stopAcct()
	<-acctDone
	stopBg()
	bg.Wait()
	e.stopPool()
	// The control socket stops before the cache it serves; the cache stops last so that answers
	// learned during the drain are written.
	stopCtl()
	<-ctlDone
	stopCache()
	<-cacheDone
	if err := e.spool.Close(); err != nil {
		e.log.Error("spool close failed", "err", err)
	}
	if err := e.cache.Close(); err != nil {
		e.log.Error("cache close failed", "err", err)
	}
	e.log.Info("stopped", "dur", time.Since(stopUDP).Round(time.Millisecond))
	return nil
}

func (e *Edge) startPool(p *proxy.Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	e.mu.Lock()
	e.poolStop, e.poolDone = cancel, done
	e.mu.Unlock()
}

func (e *Edge) stopPool() {
	e.mu.Lock()
	stop, done := e.poolStop, e.poolDone
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Reload applies a new configuration without dropping requests in flight: NAS clients and secrets
// are swapped atomically, a new upstream pool (new certificates, new upstream list) is connected and
// swapped in, and the old pool finishes its requests before it closes. Listen addresses and log
// settings need a restart; a change to them is reported.
func (e *Edge) Reload(cfg *config.Config) error {
	b := cfg.Built()
	old := e.cfg.Built()
	if !equalStrings(b.Server.AuthAddrs, old.Server.AuthAddrs) || !equalStrings(b.Server.AcctAddrs, old.Server.AcctAddrs) {
		e.log.Warn("listen addresses changed: restart mxedge to apply them")
	}
	if err := e.server.SetClients(b.Clients); err != nil {
		return fmt.Errorf("edge: reload clients: %w", err)
	}
	if e.listener != nil && b.Listener != nil {
		if err := e.listener.SetPeers(b.Listener.Peers); err != nil {
			return fmt.Errorf("edge: reload radsec peers: %w", err)
		}
		e.listener.SetTLS(b.Listener.TLS)
	}
	if t := b.Survival.EAPTLS; t != nil && e.localEAP != nil {
		e.localEAP.SetTrust([]tls.Certificate{t.Certificate}, t.Roots)
		if e.checker != nil {
			e.checker.SetIssuers(t.Issuers)
			e.checker.Reload()
		}
	}
	pool, err := e.newPool(b)
	if err != nil {
		return err
	}
	e.mu.Lock()
	oldStop, oldDone := e.poolStop, e.poolDone
	e.mu.Unlock()
	e.startPool(pool)
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	pool.WaitReady(wctx)
	cancel()
	oldPool := e.router.SetPool(pool)
	e.mu.Lock()
	e.cfg = cfg
	e.mu.Unlock()
	certs := loadCerts(b.Files)
	e.certs.Store(&certs)
	go func() {
		deadline := time.Now().Add(e.opts.ShutdownGrace)
		for oldPool.Inflight() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		oldStop()
		<-oldDone
	}()
	e.log.Info("configuration reloaded", "clients", len(b.Clients), "upstreams", len(b.Pool.Upstreams))
	return nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// resolverAdapter gives proxy the resolver interface it declares.
type resolverAdapter struct{ r *resolve.Resolver }

// Resolve returns the targets spread for this connection attempt; with a *resolve.StaleError the
// last good targets come back too, and the pool keeps using them.
func (a resolverAdapter) Resolve(ctx context.Context, host string, port uint16, srv bool) ([]proxy.Target, error) {
	ts, err := a.r.Resolve(ctx, host, port, srv)
	out := make([]proxy.Target, len(ts))
	for i, t := range resolve.Order(ts, uint64(time.Now().UnixNano())) {
		out[i] = proxy.Target{Addr: t.Addr, Host: t.Host}
	}
	return out, err
}

func (a resolverAdapter) Invalidate(host string) { a.r.Invalidate(host) }
