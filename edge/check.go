package edge

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"mxedge/cache"
	"mxedge/edge/config"
	"mxedge/edge/control"
	"mxedge/edge/decisionlog"
	"mxedge/edge/metrics"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/resolve"
	"mxedge/survivability"
	"mxedge/survivability/localeap"
	"mxedge/survivability/spool"
)

// Check validates cfg exactly as New would build it — every component's options, NAS clients,
// upstreams, local EAP-TLS material, the control socket path, the metrics address — without
// opening the cache or the spool, creating a directory, binding a socket or starting a goroutine.
// It is what `mxedge check` runs (so it works while a daemon holds the cache's lock), and what a
// configuration from the cloud must pass before the sync applies it.
func Check(cfg *config.Config) error {
	_, err := newPlan(cfg, nil, cfg.Built().Metrics)
	return err
}

// plan is a configuration turned into validated component options: what New builds from, with
// the runtime dependencies (stores, handlers, callbacks) still to be filled in.
type plan struct {
	b        *config.Built
	cache    cache.Options
	spool    spool.Options
	resolve  resolve.Options
	checker  *pki.CheckerOptions             // nil without CRL or OCSP sources
	localEAP *localeap.Options               // nil without local EAP-TLS
	authz    survivability.AuthorizerOptions // the local decision for MAB and local EAP-TLS
	engine   survivability.EngineOptions
	control  control.Options
	metrics  *metrics.Options // nil when metrics are not served
	dlog     decisionlog.Options
	// discovery is RFC 7585 realm discovery (edge/discovery.go); nil when off.
	discovery *proxy.DiscoveryOptions
}

// newPlan builds and validates the options. It has no side effects.
func newPlan(cfg *config.Config, logger *slog.Logger, metricsAddr string) (*plan, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := cfg.Built()
	p := &plan{b: b}
	p.dlog = b.DecisionLog
	p.dlog.Logger = logger
	if err := p.dlog.Validate(); err != nil {
		return nil, invalid(cfg, "log", err)
	}
	p.cache = b.Cache
	p.cache.Logger = logger
	if err := p.cache.Validate(); err != nil {
		return nil, invalid(cfg, "cache", err)
	}
	p.spool = b.Survival.Spool
	p.spool.Logger = logger
	if err := p.spool.Validate(); err != nil {
		return nil, invalid(cfg, "survivability.spool", err)
	}
	p.resolve = resolve.Options{Servers: b.DNS.Servers, Timeout: b.DNS.Timeout, Logger: logger}
	if err := p.resolve.Validate(); err != nil {
		return nil, invalid(cfg, "upstreams.dns", err)
	}
	if t := b.Survival.EAPTLS; t != nil {
		if len(t.CRLFiles) > 0 || t.OCSP {
			co := pki.CheckerOptions{CRLFiles: t.CRLFiles, Issuers: t.Issuers, OCSP: t.OCSP, Policy: t.Policy, Logger: logger}
			// The cache directory is created by New; validate everything else.
			if err := co.Validate(); err != nil {
				return nil, invalid(cfg, "survivability.eap_tls", fmt.Errorf("revocation: %w", err))
			}
			co.CacheDir = revocationDir(b)
			p.checker = &co
		}
		lo := localeap.Options{
			Certificates:  []tls.Certificate{t.Certificate},
			MinVersion:    t.MinVersion,
			FragmentSize:  t.FragmentSize,
			Verify:        pki.VerifyOptions{Roots: t.Roots},
			IdentityOrder: t.IdentityOrder,
			Logger:        logger,
		}
		if err := lo.Validate(); err != nil {
			return nil, invalid(cfg, "survivability.eap_tls", fmt.Errorf("local EAP-TLS: %w", err))
		}
		p.localEAP = &lo
	}
	p.authz = survivability.AuthorizerOptions{
		DefaultMABVLAN:   b.Survival.DefaultMABVLAN,
		DefaultDot1XVLAN: b.Survival.DefaultDot1XVLAN,
		FailClosed:       b.Survival.FailClosed,
		Logger:           logger,
	}
	if err := p.authz.Validate(); err != nil {
		return nil, invalid(cfg, "survivability", err)
	}
	if err := b.Survival.Sites.Validate(); err != nil {
		return nil, invalid(cfg, "survivability.sites", err)
	}
	p.engine = survivability.EngineOptions{Logger: logger}
	po := b.Pool
	if err := po.Validate(); err != nil {
		return nil, invalid(cfg, "upstreams", err)
	}
	d, err := discoveryPlan(b, logger)
	if err != nil {
		return nil, err
	}
	p.discovery = d
	if rto := b.Routes; len(rto.Routes) > 0 {
		if d != nil {
			rto.Discoverer = checkDiscoverer{}
		}
		if err := rto.Validate(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	ro := b.Router
	if err := ro.Validate(); err != nil {
		return nil, invalid(cfg, "no_upstream", err)
	}
	ho := survivability.HealthOptions{FailbackProbes: b.Survival.FailbackProbes}
	if err := ho.Validate(); err != nil {
		return nil, invalid(cfg, "survivability.failback_probes", err)
	}
	so := b.Server
	if err := so.Validate(); err != nil {
		return nil, invalid(cfg, "listen", err)
	}
	if _, err := proxy.NewClientTable(b.Clients, nil); err != nil {
		return nil, invalid(cfg, "clients", err)
	}
	if b.Listener != nil {
		lo := *b.Listener
		if err := lo.Validate(); err != nil {
			return nil, invalid(cfg, "radsec", err)
		}
	}
	da := b.DynAuth
	if err := da.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if b.Identity != nil {
		if err := b.Identity.Options.Validate(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	p.control = control.Options{Path: b.Control, Logger: logger}
	if err := p.control.Validate(); err != nil {
		return nil, invalid(cfg, "control.socket", err)
	}
	if err := checkPaths(cfg, p); err != nil {
		return nil, err
	}
	if metricsAddr != "" {
		mo := metrics.Options{Addr: metricsAddr, Logger: logger}
		if err := mo.Validate(); err != nil {
			return nil, invalid(cfg, "metrics.listen", err)
		}
		p.metrics = &mo
	}
	return p, nil
}

// invalid is a component's refusal of the options built from field, reported as a configuration
// error at that field's line, so that check and run (which both get it from newPlan) name the
// same file, line and field and exit alike (2).
func invalid(cfg *config.Config, field string, err error) error {
	return cfg.FieldError(field, err)
}
