package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/sockio"
)

// RealmResolver finds the RadSec servers of an NAI realm by RFC 7585 dynamic discovery (NAPTR of
// the given service tags, then SRV, then A/AAAA), caching each answer for its TTL and failures
// for a negative TTL. proxy/resolve implements it; the edge adapts it. Like Resolver.Resolve it may
// return the last good targets together with an error saying why they are stale.
type RealmResolver interface {
	Discover(ctx context.Context, realm string, services []string) ([]Target, error)
	// InvalidateRealm forgets the cached answers of realm, so a reconnect asks DNS again.
	InvalidateRealm(realm string)
}

// Discovery errors. Every error Discover returns wraps ErrDiscovery and ErrNoUpstream, so a router
// that treats "no upstream" as an Access-Reject rejects a realm nobody can serve (RFC 7585 gives
// a request for an undiscoverable realm no other answer).
var (
	// ErrDiscovery: the realm has no reachable RadSec server that proves it serves the realm.
	ErrDiscovery = errors.New("proxy: realm discovery failed")
	// ErrRealmCertificate: a discovered server's certificate does not name the realm.
	ErrRealmCertificate = errors.New("proxy: server certificate does not name the realm")
	// ErrTooManyRealms: MaxRealms pools are open and none is idle.
	ErrTooManyRealms = errors.New("proxy: too many discovered realms")
	// ErrDiscoveryStopped: Run has not started or has returned.
	ErrDiscoveryStopped = errors.New("proxy: discovery not running")
)

// DiscoveryOptions configure RFC 7585 dynamic discovery. Zero values take the documented defaults.
type DiscoveryOptions struct {
	Resolver RealmResolver
	// Services are the NAPTR service tags followed, in no particular order (NAPTR order decides).
	// Default ["aaa+auth:radius.tls.tcp"] (RFC 7585 §2.1); eduroam publishes "x-eduroam:radius.tls".
	Services []string
	// Upstream is the template of each realm's upstream: TLS (client certificate and the CAs the
	// realms' servers must chain to), Secret, timeouts, MaxConnections. Name, Host, Port, SRV,
	// ServerName and VerifySRVTarget are set per realm.
	Upstream UpstreamOptions
	// ServerName, when set, replaces the NAIRealm check: the certificate must carry this DNS name,
	// with "{realm}" replaced by the realm (e.g. "radsec.{realm}"). Default: the certificate must
	// carry the realm as an NAIRealm SAN (RFC 7585 §2.2). Never the DNS target.
	ServerName string
	// NegativeTTL is how long a realm whose discovery or first connection failed is answered with
	// that failure without trying again. Default 60s. DNS failures are also remembered by the
	// resolver for its own negative TTL.
	NegativeTTL time.Duration
	// IdleTimeout closes a realm's connections after this long without a request. Default 5m.
	IdleTimeout time.Duration
	// ConnectTimeout bounds how long the first request for a realm waits for its first
	// connection (DNS, TCP, TLS, Status-Server). Default DialTimeout + DeadAfter + 1s.
	ConnectTimeout time.Duration
	// MaxRealms caps the realms with open or opening pools, and separately the remembered
	// failures (the oldest-forgotten first when full), so requests for made-up realms bound the
	// memory and never lock out a realm that works. Default 1024.
	MaxRealms int
	Cork      *sockio.Cork
	Logger    *slog.Logger
	// Now is the clock of idle and negative caching (the connections keep the real clock).
	Now func() time.Time
}

// Discovery defaults (DiscoveryOptions).
const (
	DefaultDiscoveryNegativeTTL = time.Minute
	DefaultDiscoveryIdleTimeout = 5 * time.Minute
	DefaultDiscoveryMaxRealms   = 1024
	// DefaultDiscoveryService is the RFC 7585 §2.1 tag for RADIUS/TLS authentication.
	DefaultDiscoveryService = "aaa+auth:radius.tls.tcp"
)

// Validate checks the options before anything is dialed.
func (o *DiscoveryOptions) Validate() error {
	if o.Resolver == nil {
		return errors.New("proxy: discovery: no resolver")
	}
	if o.Upstream.TLS == nil {
		return errors.New("proxy: discovery: no TLS configuration")
	}
	for _, s := range o.Services {
		if s == "" || strings.ContainsAny(s, " \t") {
			return fmt.Errorf("proxy: discovery: bad service tag %q", s)
		}
	}
	if o.ServerName != "" && !strings.Contains(o.ServerName, "{realm}") {
		return fmt.Errorf("proxy: discovery: server_name %q does not contain {realm}", o.ServerName)
	}
	if o.NegativeTTL < 0 || o.IdleTimeout < 0 || o.ConnectTimeout < 0 || o.MaxRealms < 0 {
		return errors.New("proxy: discovery: negative duration or limit")
	}
	u := o.Upstream
	u.Name, u.Host = "discovery", "realm.invalid"
	return u.Validate()
}

func (o *DiscoveryOptions) setDefaults() {
	if len(o.Services) == 0 {
		o.Services = []string{DefaultDiscoveryService}
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultDiscoveryNegativeTTL
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultDiscoveryIdleTimeout
	}
	if o.MaxRealms == 0 {
		o.MaxRealms = DefaultDiscoveryMaxRealms
	}
	o.Upstream.setDefaults()
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = o.Upstream.DialTimeout + o.Upstream.DeadAfter + time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Discovery hands out one Pool of RadSec upstreams per realm, found by RFC 7585 dynamic
// discovery, created on the first request for the realm and closed when idle. Its Run owns every
// pool's goroutines.
type Discovery struct {
	now func() time.Time
	log *slog.Logger

	started chan struct{} // closed when Run starts: a Discover before waits for it

	mu     sync.Mutex
	opts   DiscoveryOptions // replaced by SetOptions; each realm keeps the ones it opened with
	ctx    context.Context  // Run's; nil before Run and after it returned
	realms map[string]*realmPool
	failed map[string]failure
	wg     sync.WaitGroup
}

type failure struct {
	err   error
	until time.Time
}

// realmPool is one realm's pool and its lifecycle.
type realmPool struct {
	realm    string
	opts     DiscoveryOptions // as they were when the realm was opened
	pool     *Pool
	cancel   context.CancelFunc
	ready    chan struct{} // closed when the first connection settled; err says how
	err      error
	lastUsed atomic.Int64 // unix nanoseconds, Discovery's clock
}

// RealmStatus is a snapshot of one discovered realm for status output.
type RealmStatus struct {
	Realm    string
	Upstream UpstreamStatus
	Idle     time.Duration
}

// NewDiscovery checks o and applies the defaults; Run starts it.
func NewDiscovery(o DiscoveryOptions) (*Discovery, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.Services = append([]string(nil), o.Services...)
	o.setDefaults()
	return &Discovery{opts: o, now: o.Now, log: o.Logger, started: make(chan struct{}),
		realms: map[string]*realmPool{}, failed: map[string]failure{}}, nil
}

// Run serves Discover until ctx ends, closing idle realms, then closes every realm's connections
// and returns nil once their goroutines have exited. Call it once; a Discover before Run waits
// for it.
func (d *Discovery) Run(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	idle := d.opts.IdleTimeout
	d.mu.Unlock()
	close(d.started)
	// Sweeps every quarter of the idle timeout (a later SetOptions keeps this pace).
	t := time.NewTicker(max(time.Second, min(idle/4, 10*time.Second)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.ctx = nil
			for realm, rp := range d.realms {
				rp.cancel()
				delete(d.realms, realm)
			}
			d.mu.Unlock()
			d.wg.Wait()
			return nil
		case <-t.C:
			d.sweep()
		}
	}
}

// Discover returns the pool of realm's RadSec servers, discovering them and connecting on the
// first request (waiting up to ConnectTimeout or ctx for the first connection). A realm whose
// discovery or connection failed gets that failure for NegativeTTL. Every error wraps
// ErrDiscovery and ErrNoUpstream.
//
// The pool is an ordinary Pool: Forward re-keys and sends as to any upstream. It stays open while
// it is used and closes IdleTimeout after its last Discover with nothing in flight.
func (d *Discovery) Discover(ctx context.Context, realm string) (*Pool, error) {
	realm = strings.ToLower(strings.TrimSuffix(realm, "."))
	if realm == "" || len(realm) > 253 {
		return nil, d.fail(realm, fmt.Errorf("invalid realm %q", realm))
	}
	select {
	case <-d.started:
	case <-ctx.Done():
		return nil, d.fail(realm, ctx.Err())
	}
	now := d.now()
	d.mu.Lock()
	rp := d.realms[realm]
	if rp == nil {
		if d.ctx == nil {
			d.mu.Unlock()
			return nil, d.fail(realm, ErrDiscoveryStopped)
		}
		if f, ok := d.failed[realm]; ok {
			if now.Before(f.until) {
				d.mu.Unlock()
				return nil, f.err
			}
			delete(d.failed, realm)
		}
		if len(d.realms) >= d.opts.MaxRealms {
			d.mu.Unlock()
			return nil, d.fail(realm, ErrTooManyRealms)
		}
		rp = d.start(realm)
	}
	rp.lastUsed.Store(now.UnixNano())
	d.mu.Unlock()
	select {
	case <-rp.ready:
	case <-ctx.Done():
		return nil, d.fail(realm, ctx.Err())
	}
	if rp.err != nil {
		return nil, rp.err
	}
	return rp.pool, nil
}

// fail wraps a discovery failure of realm.
func (d *Discovery) fail(realm string, err error) error {
	return fmt.Errorf("%w: %w: %s: %w", ErrNoUpstream, ErrDiscovery, realm, err)
}

// start creates realm's pool and starts connecting it; called with d.mu held.
func (d *Discovery) start(realm string) *realmPool {
	ctx, cancel := context.WithCancel(d.ctx)
	rp := &realmPool{realm: realm, opts: d.opts, cancel: cancel, ready: make(chan struct{})}
	d.realms[realm] = rp
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer cancel()
		d.serve(ctx, rp)
	}()
	return rp
}

// serve discovers realm, connects its pool and runs it until ctx ends (idle close, shutdown).
func (d *Discovery) serve(ctx context.Context, rp *realmPool) {
	if err := d.connectAndRun(ctx, rp); err != nil {
		rp.err = d.fail(rp.realm, err)
		d.mu.Lock()
		if d.realms[rp.realm] == rp {
			delete(d.realms, rp.realm)
			if len(d.failed) >= d.opts.MaxRealms {
				// Full of failures (requests for made-up realms): forget one rather than
				// refuse realms that work.
				for k := range d.failed {
					delete(d.failed, k)
					break
				}
			}
			d.failed[rp.realm] = failure{err: rp.err, until: d.now().Add(rp.opts.NegativeTTL)}
		}
		d.mu.Unlock()
		close(rp.ready)
		if ctx.Err() == nil {
			d.log.Warn("realm discovery failed", "upstream", rp.realm, "err", err)
		}
	}
}

// connectAndRun resolves realm, builds its pool and waits for the first connection; on success it
// signals ready and runs the pool until ctx ends.
func (d *Discovery) connectAndRun(ctx context.Context, rp *realmPool) error {
	o := rp.opts
	cctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	targets, err := o.Resolver.Discover(cctx, rp.realm, o.Services)
	if len(targets) == 0 {
		if err == nil {
			err = errors.New("no servers")
		}
		return err
	}
	uo := o.Upstream
	uo.Name, uo.Host, uo.ServerName = rp.realm, rp.realm, rp.realm // ServerName is the SNI here
	uo.SRV, uo.VerifySRVTarget, uo.Port = false, false, 0
	uo.TLS = realmTLS(o, rp.realm)
	pool, err := NewPool(PoolOptions{
		Upstreams: []UpstreamOptions{uo},
		Resolver:  realmResolver{r: o.Resolver, services: o.Services},
		Cork:      o.Cork,
		Logger:    o.Logger,
	})
	if err != nil {
		return err
	}
	rp.pool = pool
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pool.Run(pctx)
	}()
	pool.WaitReady(cctx)
	u := pool.Upstreams()[0]
	if !u.available() {
		stop()
		<-done
		u.mu.Lock()
		last := u.lastErr
		u.mu.Unlock()
		if last != nil {
			return fmt.Errorf("connect: %w", last)
		}
		return fmt.Errorf("connect: %w", context.Cause(cctx))
	}
	d.log.Info("realm discovered", "upstream", rp.realm, "peer", u.peer())
	close(rp.ready)
	<-done
	stop()
	return nil
}

// sweep closes realms idle for IdleTimeout with nothing in flight and forgets expired failures.
func (d *Discovery) sweep() {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for realm, rp := range d.realms {
		select {
		case <-rp.ready:
		default:
			continue // still connecting
		}
		if rp.err != nil || rp.pool.Inflight() > 0 || now.Sub(time.Unix(0, rp.lastUsed.Load())) < rp.opts.IdleTimeout {
			continue
		}
		delete(d.realms, realm)
		rp.cancel()
		d.log.Info("realm idle: connections closed", "upstream", realm)
	}
	for realm, f := range d.failed {
		if !now.Before(f.until) {
			delete(d.failed, realm)
		}
	}
}

// SetOptions applies a reloaded configuration to the realms opened from now on (certificates,
// CA, service tags, certificate rule, timers, caps) and forgets remembered failures, which the
// new configuration may have fixed. Open realms keep their connections until they go idle.
// Resolver, Cork, Logger and Now stay those NewDiscovery was given.
func (d *Discovery) SetOptions(o DiscoveryOptions) error {
	d.mu.Lock()
	o.Resolver, o.Cork, o.Logger, o.Now = d.opts.Resolver, d.opts.Cork, d.log, d.now
	d.mu.Unlock()
	if err := o.Validate(); err != nil {
		return err
	}
	o.Services = append([]string(nil), o.Services...)
	o.setDefaults()
	d.mu.Lock()
	d.opts = o
	clear(d.failed)
	d.mu.Unlock()
	return nil
}

// Realms returns a snapshot of the open realms, sorted by realm.
func (d *Discovery) Realms() []RealmStatus {
	now := d.now()
	d.mu.Lock()
	var rps []*realmPool
	for _, rp := range d.realms {
		rps = append(rps, rp)
	}
	d.mu.Unlock()
	var out []RealmStatus
	for _, rp := range rps {
		select {
		case <-rp.ready:
		default:
			continue
		}
		if rp.err != nil {
			continue
		}
		out = append(out, RealmStatus{Realm: rp.realm, Upstream: rp.pool.Upstreams()[0].Status(), Idle: now.Sub(time.Unix(0, rp.lastUsed.Load()))})
	}
	slices.SortFunc(out, func(a, b RealmStatus) int { return strings.Compare(a.Realm, b.Realm) })
	return out
}

// realmTLS is the template's TLS configuration with the certificate checked against the realm
// instead of the dialled name: the chain must verify against the template's RootCAs (as for any
// upstream) and the leaf must name the realm (NAIRealm SAN) or the configured ServerName.
func realmTLS(o DiscoveryOptions, realm string) *tls.Config {
	cfg := o.Upstream.TLS.Clone()
	roots := cfg.RootCAs
	rule := strings.ReplaceAll(o.ServerName, "{realm}", realm)
	// The standard verification checks ServerName, which here is only the SNI; VerifyConnection
	// does the whole check instead (crypto/tls runs it whether or not InsecureSkipVerify is set).
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyRealmCert(cs.PeerCertificates, roots, realm, rule, time.Now())
	}
	return cfg
}

// verifyRealmCert checks a RadSec server's chain and that it serves realm.
func verifyRealmCert(certs []*x509.Certificate, roots *x509.CertPool, realm, serverName string, now time.Time) error {
	if len(certs) == 0 {
		return errors.New("proxy: server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return err
	}
	if serverName != "" {
		if err := certs[0].VerifyHostname(serverName); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRealmCertificate, realm, err)
		}
		return nil
	}
	names, err := NAIRealms(certs[0])
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRealmCertificate, realm, err)
	}
	for _, n := range names {
		if matchRealm(n, realm) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s (NAIRealm SANs %q, subject %q)", ErrRealmCertificate, realm, names, certs[0].Subject.CommonName)
}

// realmResolver is the Resolver of one realm's pool: its upstream's host is the realm, resolved by
// discovery on every reconnect.
type realmResolver struct {
	r        RealmResolver
	services []string
}

func (r realmResolver) Resolve(ctx context.Context, realm string, _ uint16, _ bool) ([]Target, error) {
	return r.r.Discover(ctx, realm, r.services)
}

func (r realmResolver) Invalidate(realm string) { r.r.InvalidateRealm(realm) }
