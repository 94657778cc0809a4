// Package edge is the mxedge daemon. New builds every component from a configuration in one pass
// (storage, then survivability, then the proxy, then the operator's sockets), each constructor
// given what it needs, and binds every socket; Run owns the lifecycle: signals, one serialized
// reload queue, sd_notify, the cloud sync and ordered shutdown. Check validates a configuration the
// same way without touching a lock, a file or a socket. It is the only package that knows every
// component (docs/architecture.md).
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
	"mxedge/cache/session"
	"mxedge/edge/cluster"
	"mxedge/edge/config"
	"mxedge/edge/control"
	"mxedge/edge/decisionlog"
	"mxedge/edge/events"
	"mxedge/edge/metrics"
	"mxedge/edge/mgmt"
	"mxedge/edge/notify"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/dynauth"
	"mxedge/proxy/resolve"
	"mxedge/proxy/sockio"
	"mxedge/survivability"
	"mxedge/survivability/localeap"
	"mxedge/survivability/spool"
)

// Defaults of Options.
const (
	DefaultShutdownGrace = 5 * time.Second
	DefaultWatchInterval = 10 * time.Second
	// readyWait bounds how long start-up and a reload wait for new upstream connections to settle.
	readyWait = 5 * time.Second
)

// Options configure an Edge beyond the file.
type Options struct {
	Logger *slog.Logger // nil discards
	// ShutdownGrace bounds how long requests in flight may take to finish on shutdown and how long
	// an old upstream pool may drain after a reload. Default DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Sockets are sockets passed by the service manager (systemd socket activation, LISTEN_FDS):
	// UDP sockets serve RADIUS instead of the configured listen addresses — named "auth" or "acct"
	// (FileDescriptorName=), else accounting when bound to port 1813 and authentication otherwise —
	// and TCP sockets serve RadSec.
	Sockets []*os.File
	// MetricsAddr is where Prometheus metrics are served (`mxedge run` passes the configured
	// address); "" serves none.
	MetricsAddr string
	// Version and Commit identify the binary in mxedge_build_info ("": the Go build info's).
	Version, Commit string
	// Signals are the process signals Run acts on: SIGHUP reloads the configuration file, SIGINT and
	// SIGTERM shut down as a cancelled context does. The caller subscribes them (signal.Notify), so
	// tests send their own. nil: none.
	Signals <-chan os.Signal
	// Sync, when set, runs the management plane's sync loop for the life of Run (a registered edge,
	// docs/management.md). Registration is required; ValidateConfig, Apply, MergeCache, Reloaded and
	// Logger are the daemon's and are overwritten.
	Sync *mgmt.SyncOptions
	// WatchInterval is how often the certificate, key and CA files in use are checked for changes
	// (a renewal tool replaced them), which reloads. Default DefaultWatchInterval.
	WatchInterval time.Duration
	// Notifier talks to systemd. nil: notify.New(Logger), a no-op outside systemd.
	Notifier *notify.Notifier
	// LogLevel, when set, is the level Logger's handler reads: a reload sets it from log.level.
	// nil: the level stays as Logger was built.
	LogLevel *slog.LevelVar
}

// Validate checks the options.
func (o *Options) Validate() error {
	switch {
	case o.ShutdownGrace < 0:
		return fmt.Errorf("edge: shutdown grace %v: must not be negative", o.ShutdownGrace)
	case o.WatchInterval < 0:
		return fmt.Errorf("edge: watch interval %v: must not be negative", o.WatchInterval)
	case o.Sync != nil && o.Sync.Registration == nil:
		return errors.New("edge: cloud sync without a registration")
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.WatchInterval == 0 {
		o.WatchInterval = DefaultWatchInterval
	}
	if o.Notifier == nil {
		o.Notifier = notify.New(o.Logger)
	}
}

// Edge is a built mxedge: every component constructed and every socket bound. Run serves.
type Edge struct {
	opts Options
	log  *slog.Logger

	// Storage.
	cache    *cache.Store
	spool    *spool.Spool
	sessions *session.Store  // nil when the session table is off
	tracker  *sessionTracker // feeds sessions (edge/sessions.go); nil with it
	// Survivability.
	health   *survivability.Health
	checker  *pki.Checker // nil without CRL or OCSP sources
	localEAP *localeap.Handler
	acct     *survivability.Accounting
	learner  *survivability.Learner
	engine   *survivability.Engine // nil when survivability is off
	sites    *survivability.Sites  // the per-site policy, swapped on reload
	// The proxy.
	resolver *resolve.Resolver
	cork     *sockio.Cork // shared by the front door and every pool, so bursts span both
	psPrefix [4]byte      // every pool's Proxy-State prefix (loop prevention, edge/routes.go)
	router   *proxy.Router
	server   *proxy.Server
	listener *proxy.Listener // nil without a RadSec listener
	// discovery finds realms' RadSec servers (edge/discovery.go); nil when off.
	discovery *proxy.Discovery
	dynauth   *dynauth.Relay // CoA/Disconnect relay (edge/dynauth.go)
	// reconciler re-authorizes locally admitted sessions after failback; nil without a session
	// table.
	reconciler *dynauth.Reconciler
	// The operator's view.
	events  *events.Bus
	control *control.Server
	metrics *metrics.Server // nil when not served
	syncer  *mgmt.Syncer    // nil unless registered
	notify  *notify.Notifier
	certs   atomic.Pointer[[]pki.NamedCert]
	// decisions counts every decision where it is made (publish), for the metrics.
	decisions *survivability.DecisionStats
	// dlog is the access decision log, fed by publish (edge/decisions.go).
	dlog *decisionlog.Log
	// fticks sends F-Ticks lines to a syslog receiver (edge/fticks.go).
	fticks *fticksSyslog

	// The cluster (edge/cluster.go); zero when this edge is alone.
	clusterParts  clusterParts
	clusterEvents [5]atomic.Uint64

	identity *identityPush // nil without identity sinks (edge/identity.go)

	reloads chan reloadRequest // the reload queue: Run's reload loop is its only consumer
	ready   chan struct{}      // closed once Run serves
	stopped chan struct{}      // closed when Run stops taking reloads
	running atomic.Bool

	mu      sync.Mutex
	cfg     *config.Config
	pool    poolRun // the current pool's Run
	started time.Time
}

// poolRun is a running upstream pool and how to stop it.
type poolRun struct {
	pool   *proxy.Pool
	routes *proxy.RouteTable // the routes' own pools; nil without routes
	stop   func()
	done   chan struct{}
}

// New builds the components from a validated configuration in dependency order — storage (the
// client cache, the accounting spool), survivability (health, local EAP-TLS, accounting replay, the
// cache learner, the local decision engine), the proxy (upstream pool, router, front door, RadSec
// listener), the operator's sockets (control, metrics) — and binds every socket. Nothing is dialed
// and no goroutine runs until Run. On error everything already opened is closed again.
func New(cfg *config.Config, o Options) (_ *Edge, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.setDefaults()
	p, err := newPlan(cfg, o.Logger, o.MetricsAddr)
	if err != nil {
		return nil, err
	}
	e := &Edge{opts: o, log: o.Logger, cfg: cfg, events: events.New(events.Options{}), notify: o.Notifier,
		reloads: make(chan reloadRequest), ready: make(chan struct{}), stopped: make(chan struct{}),
		decisions: survivability.NewDecisionStats()}
	defer func() {
		if err != nil {
			e.closeAll()
		}
	}()
	certs := loadCerts(p.b.Files)
	e.certs.Store(&certs)
	if e.dlog, err = decisionlog.New(p.dlog); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.fticks = newFTicksSyslog(e.log)

	// Storage. A cluster member's cache runs on the cluster's hybrid clock, so stamps from peers
	// are never in its future.
	if p.b.Cluster != nil {
		e.clusterParts.clock = cluster.NewClock(nil, 0)
		p.cache.Now = e.clusterParts.clock.Now
	}
	if e.cache, err = cache.Open(p.cache); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if e.spool, err = spool.Open(p.spool); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if e.identity, err = newIdentity(p.b.Identity, p.b.Sessions != nil, e.log, e.nasSecret, e.events); err != nil {
		return nil, err
	}
	if err := e.openSessions(e.identity.sessionOptions(p.b.Sessions), p.b.Cluster); err != nil {
		return nil, err
	}

	// Survivability.
	e.health = survivability.NewHealth(survivability.HealthOptions{FailbackProbes: p.b.Survival.FailbackProbes, Logger: e.log,
		OnChange: func(_, to survivability.Mode, _ string) {
			if to == survivability.ModeUp {
				e.acct.Kick()     // deliver what was spooled while the cloud was away
				e.kickReconcile() // re-authorize through the cloud who was admitted locally
			}
		}})
	if p.checker != nil {
		// The last good CRL/OCSP answers are kept on disk beside the cache, so a restart without
		// network still has revocation data.
		if err := os.MkdirAll(p.checker.CacheDir, 0o750); err != nil {
			return nil, fmt.Errorf("edge: revocation cache: %w", err)
		}
		if e.checker, err = pki.NewChecker(*p.checker); err != nil {
			return nil, fmt.Errorf("edge: revocation: %w", err)
		}
	}
	e.acct = survivability.NewAccounting(survivability.AccountingOptions{
		Spool: e.spool, Forward: currentPool{e}, Clients: e.clientByName, Health: e.health,
		Timeout: p.b.Server.RequestTimeout, Logger: e.log,
	})
	var learned survivability.CacheWriter = e.cache
	if p.b.Cluster != nil {
		if err := e.newCluster(p.b, p.cache.Path); err != nil {
			return nil, err
		}
		learned = e.clusterParts.c // written here and sent to the peers
	}
	if e.learner, err = survivability.NewLearner(survivability.LearnerOptions{Cache: learned, Events: e.publish, Logger: e.log}); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	// One local authorization decision for MAB and local EAP-TLS, under the per-site policy.
	if e.sites, err = survivability.NewSites(p.b.Survival.Sites); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	ao := p.authz
	ao.Cache, ao.Sites = e.cache, e.sites
	authz, err := survivability.NewAuthorizer(ao)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if p.localEAP != nil {
		lo := *p.localEAP
		lo.Authorizer, lo.Events = authz, e.publish
		lo.Verify.Revocation = e.checker
		if e.localEAP, err = localeap.New(lo); err != nil {
			return nil, fmt.Errorf("edge: local EAP-TLS: %w", err)
		}
	}
	var fallback proxy.Fallback
	if p.b.Survival.Enabled {
		eo := p.engine
		eo.Health, eo.Authorizer, eo.Accounting, eo.Events, eo.Sites = e.health, authz, e.acct, e.publish, e.sites
		if e.localEAP != nil {
			eo.EAP = e.localEAP
		}
		if e.engine, err = survivability.NewEngine(eo); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		fallback = e.engine
		if e.tracker != nil {
			fallback = trackedFallback{fallback, e.tracker}
		}
		// Outermost: an answer through a peer is the cloud's, seen by answerObserver, not a local one.
		if e.clusterParts.peers != nil {
			fallback = &peerFallback{inner: fallback, e: e}
		}
		if e.identity != nil {
			fallback = identityFallback{fallback, e.identity}
		}
	}

	// The proxy.
	if e.resolver, err = resolve.New(p.resolve); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.cork = new(sockio.Cork)
	e.psPrefix = newProxyStatePrefix()
	if err := e.newDynAuth(p.b); err != nil {
		return nil, err
	}
	pool, err := e.newPool(p.b)
	if err != nil {
		return nil, err
	}
	e.pool = poolRun{pool: pool}
	if err := e.newDiscovery(p.discovery); err != nil {
		return nil, err
	}
	routes, err := e.newRoutes(p.b)
	if err != nil {
		return nil, err
	}
	e.pool.routes = routes
	stats := new(proxy.Stats) // the front door's counters, which the router also counts into
	ro := p.b.Router
	ro.Logger, ro.Fallback, ro.Observer, ro.Routed, ro.Timeouts = e.log, fallback, answerObserver{e}, routeObserver{e}, e.health
	e.router = proxy.NewRouter(ro, pool, stats)
	e.fticks.use(p.b)
	e.router.SetRoutes(routes)
	so := p.b.Server
	so.Logger, so.Cork, so.Stats = e.log, e.cork, stats
	so.Spread = e.health.Local // every CPU reads while answers are local (proxy.ServerOptions)
	if e.server, err = proxy.NewServer(so, e.router); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if err := e.server.SetClients(p.b.Clients); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if p.b.Listener != nil {
		lo := *p.b.Listener
		lo.Logger, lo.DynAuth = e.log, e.dynauth
		if e.listener, err = proxy.NewListener(lo, e.server); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}

	// The operator's view, then every socket: bind errors surface before the service is ready.
	co := p.control
	co.Cache, co.Status, co.Events, co.Clients = e.cache, func() any { return e.Status() }, e.events, e.nasClients
	co.CoA = e.operatorCoA
	if e.clusterParts.c != nil {
		co.Cluster = func() any { return e.ClusterStatus() }
	}
	if e.sessions != nil {
		co.Sessions = e.findSessions
	}
	co.Snapshots = backupSnapshots(e)
	co.Identity = func() any { return e.IdentityStatus() }
	if e.control, err = control.NewServer(co); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if err := e.control.Listen(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if p.metrics != nil {
		mo := *p.metrics
		mo.Snapshot, mo.Certificates = e.metricsSnapshot, e.certificates
		mo.Build = metrics.BuildInfo{Version: o.Version, Commit: o.Commit}
		if e.metrics, err = metrics.New(mo); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		if err := e.metrics.Listen(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	if err := e.useSockets(); err != nil {
		return nil, err
	}
	if err := e.server.Listen(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if e.listener != nil {
		if err := e.listener.Listen(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	if err := e.dynauth.Listen(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if o.Sync != nil {
		if e.syncer, err = e.newSyncer(*o.Sync); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	return e, nil
}

// closeAll releases what New opened, in reverse order, when start-up fails. Run's shutdown does the
// same for a running edge.
func (e *Edge) closeAll() {
	if e.dynauth != nil {
		e.dynauth.Close()
	}
	if e.listener != nil {
		e.listener.Close()
	}
	if e.server != nil {
		e.server.Close()
	}
	if e.metrics != nil {
		e.metrics.Close()
	}
	if e.control != nil {
		e.control.Close()
	}
	if e.clusterParts.c != nil {
		e.clusterParts.c.Close()
	}
	if e.spool != nil {
		e.spool.Close()
	}
	e.closeSessions()
	e.identity.close()
	if e.cache != nil {
		e.cache.Close()
	}
}

func (e *Edge) newPool(b *config.Built) (*proxy.Pool, error) {
	po := b.Pool
	po.Logger, po.Cork = e.log, e.cork
	po.Resolver = resolverAdapter{e.resolver}
	po.Health = e.health
	po.ProxyStatePrefix = e.psPrefix
	po.DynAuth = e.dynauth // CoA from the cloud on the upstream connections
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

// Cache returns the client cache.
func (e *Edge) Cache() *cache.Store { return e.cache }

// Spool returns the accounting spool.
func (e *Edge) Spool() *spool.Spool { return e.spool }

// Health returns the survivability state machine.
func (e *Edge) Health() *survivability.Health { return e.health }

// Syncer returns the management sync loop, or nil when the edge is not registered.
func (e *Edge) Syncer() *mgmt.Syncer { return e.syncer }

// AuthAddrs returns the bound authentication addresses.
func (e *Edge) AuthAddrs() []netip.AddrPort { return e.server.Addrs(proxy.PortAuth) }

// AcctAddrs returns the bound accounting addresses.
func (e *Edge) AcctAddrs() []netip.AddrPort { return e.server.Addrs(proxy.PortAcct) }

// Ready is closed once Run serves: every listener bound, the first upstream connections settled.
func (e *Edge) Ready() <-chan struct{} { return e.ready }

// Status is the daemon's state for `mxedge status` and the control socket.
type Status struct {
	Mode       string                     `json:"mode"`
	Since      time.Time                  `json:"since"`
	Started    time.Time                  `json:"started"`
	Upstreams  []proxy.UpstreamStatus     `json:"upstreams"`
	Cache      cache.Stats                `json:"cache"`
	Received   uint64                     `json:"received"`
	Forwarded  uint64                     `json:"forwarded"`
	Answered   uint64                     `json:"upstream_answered"`
	Local      uint64                     `json:"local_decisions"`
	Dropped    map[string]uint64          `json:"dropped"`
	Certs      []CertExpiry               `json:"certificates"`
	Spool      int                        `json:"spool_depth"`
	Quarantine int                        `json:"spool_quarantined,omitempty"`
	Listeners  []string                   `json:"listeners"`
	Revocation []pki.SourceStatus         `json:"revocation,omitempty"`
	Sessions   *SessionStatus             `json:"sessions,omitempty"`
	Reconcile  *dynauth.ReconcileProgress `json:"reconcile,omitempty"`
	// RadSec is each live connection of the RadSec listener; Realms the realms discovery opened.
	RadSec []proxy.PeerConnStatus `json:"radsec,omitempty"`
	Realms []proxy.RealmStatus    `json:"realms,omitempty"`
	// Routes, their pools and counters (edge/routes.go); empty without routes.
	Routes       []RouteStatus     `json:"routes,omitempty"`
	RouteDefault uint64            `json:"route_default,omitempty"`
	RouteLoops   uint64            `json:"route_loops,omitempty"`
	RoutePools   []RoutePoolStatus `json:"route_pools,omitempty"`
}

// Status returns a snapshot of the running edge.
func (e *Edge) Status() Status {
	st := e.server.Stats()
	e.mu.Lock()
	started := e.started
	e.mu.Unlock()
	s := Status{
		Mode: e.health.Mode().String(), Since: e.health.Since(), Started: started,
		Received: st.Received.Load(), Forwarded: st.Forwarded.Load(), Answered: st.UpstreamAnswered.Load(),
		Local: st.Fallback.Load(), Dropped: map[string]uint64{},
		Cache: e.cache.Stats(), Spool: e.spool.Len(), Quarantine: e.spool.Stats().QuarantineDepth,
		Sessions:  e.sessionStatus(),
		Reconcile: e.reconcileStatus(),
	}
	for _, u := range e.router.Pool().Upstreams() {
		s.Upstreams = append(s.Upstreams, u.Status())
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
		s.RadSec = e.listener.Conns()
	}
	if e.discovery != nil {
		s.Realms = e.discovery.Realms()
	}
	e.routeStatus(&s)
	for _, a := range e.dynauth.Addrs() {
		s.Listeners = append(s.Listeners, "dynauth udp "+a.String())
	}
	for _, r := range proxy.DropReasons() {
		if n := st.Dropped[r].Load(); n > 0 {
			s.Dropped[r.String()] = n
		}
	}
	return s
}

// currentPool replays spooled accounting through whichever upstream pool the router holds now:
// a reload swaps the pool under a running replay.
type currentPool struct{ e *Edge }

func (f currentPool) Forward(req *proxy.Request, done func(proxy.Result)) {
	f.e.router.Pool().Forward(req, done)
}

// nasSecret is a NAS client's secret (the identity accounting copy re-hides encrypted attributes).
func (e *Edge) nasSecret(name string) []byte {
	if c := e.clientByName(name); c != nil {
		return c.Secret
	}
	return nil
}

// clientByName finds a NAS client of the running configuration (a spooled record names its NAS).
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

// setTrust gives local EAP-TLS the certificate and roots of a new configuration.
func (e *Edge) setTrust(t *config.EAPTLS) {
	if t == nil || e.localEAP == nil {
		return
	}
	e.localEAP.SetTrust([]tls.Certificate{t.Certificate}, t.Roots)
	if e.checker != nil {
		e.checker.SetIssuers(t.Issuers)
		e.checker.Reload()
	}
}

// revocationDir is where the last good CRL/OCSP answers are kept: beside the cache.
func revocationDir(b *config.Built) string {
	return filepath.Join(filepath.Dir(b.Cache.Path), "revocation")
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
