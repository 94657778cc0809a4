package edge

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/metrics"
	"mxedge/proxy"
	"mxedge/proxy/resolve"
)

// discoveryPlan validates the RFC 7585 discovery options (nil when discovery is off). The
// resolver is filled in by New.
func discoveryPlan(b *config.Built, logger *slog.Logger) (*proxy.DiscoveryOptions, error) {
	if b.Discovery == nil {
		return nil, nil
	}
	o := *b.Discovery
	o.Resolver, o.Logger = realmAdapter{}, logger
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return &o, nil
}

// newDiscovery builds the realm discovery over the edge's resolver, sharing the front door's cork.
func (e *Edge) newDiscovery(o *proxy.DiscoveryOptions) error {
	if o == nil {
		return nil
	}
	do := *o
	do.Resolver, do.Cork = realmAdapter{e.resolver}, e.cork
	d, err := proxy.NewDiscovery(do)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.discovery = d
	return nil
}

// Discovery is the RFC 7585 realm discovery (nil unless discovery.enabled): the router's
// dynamic-discovery target calls its Discover for a realm's pool.
func (e *Edge) Discovery() *proxy.Discovery { return e.discovery }

// realmAdapter gives proxy the RealmResolver it declares, spreading connections over the
// discovered servers as resolverAdapter does.
type realmAdapter struct{ r *resolve.Resolver }

func (a realmAdapter) Discover(ctx context.Context, realm string, services []string) ([]proxy.Target, error) {
	ts, err := a.r.Discover(ctx, realm, services)
	out := make([]proxy.Target, len(ts))
	for i, t := range resolve.Order(ts, uint64(time.Now().UnixNano())) {
		out[i] = proxy.Target{Addr: t.Addr, Host: t.Host}
	}
	return out, err
}

func (a realmAdapter) InvalidateRealm(realm string) { a.r.InvalidateRealm(realm) }

// radsecConns lists every live RadSec connection's TLS parameters for the metrics: the
// upstreams', the discovered realms' and the listener's.
func radsecConns(st Status) []metrics.RadSecConn {
	var out []metrics.RadSecConn
	add := func(dir, peer string, t proxy.TLSInfo) {
		out = append(out, metrics.RadSecConn{Direction: dir, Peer: peer, Version: t.Version, Cipher: t.Cipher, Group: t.Group, RADIUS: t.RADIUS})
	}
	for _, u := range st.Upstreams {
		for _, t := range u.TLS {
			add("upstream", u.Name, t)
		}
	}
	for _, r := range st.Realms {
		for _, t := range r.Upstream.TLS {
			add("upstream", r.Realm, t)
		}
	}
	for _, c := range st.RadSec {
		add("listener", c.NAS, c.TLS)
	}
	return out
}

// reloadDiscovery gives discovery a reloaded configuration's options (new certificates, CA,
// tags, timers) for the realms opened from now on; turning discovery on or off needs a restart.
func (e *Edge) reloadDiscovery(b *config.Built) {
	switch {
	case (b.Discovery == nil) != (e.discovery == nil):
		e.log.Warn("discovery turned on or off: restart mxedge to apply it")
	case e.discovery != nil:
		o := *b.Discovery
		if err := e.discovery.SetOptions(o); err != nil {
			e.log.Error("discovery not reloaded", "err", err)
		}
	}
}
