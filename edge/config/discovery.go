package config

import (
	"fmt"
	"strings"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/resolve"
)

// DiscoveryFile configures RFC 7585 dynamic discovery of RadSec servers by realm
// (docs/dns.md). The routing rules decide which realms use it; this block says how.
type DiscoveryFile struct {
	Enabled bool `yaml:"enabled"` // default false
	// Services are the NAPTR service tags followed. Default [aaa+auth:radius.tls.tcp];
	// eduroam: [x-eduroam:radius.tls].
	Services []string `yaml:"services"`
	// ServerName replaces the NAIRealm check with a DNS name the certificate must carry,
	// "{realm}" standing for the realm (e.g. "radsec.{realm}"). Default: the NAIRealm SAN.
	ServerName  string   `yaml:"server_name"`
	NegativeTTL Duration `yaml:"negative_ttl"` // default 1m
	IdleTimeout Duration `yaml:"idle_timeout"` // default 5m
	MaxRealms   int      `yaml:"max_realms"`   // default 1024
	// TLS is the client certificate and the CAs the realms' servers must chain to. Default:
	// upstreams.tls.
	TLS    *TLSFile `yaml:"tls"`
	Secret string   `yaml:"secret"` // default "radsec"
}

// buildDiscovery turns the discovery block into proxy.DiscoveryOptions (b.Discovery, nil when
// off). The upstream template takes the timers of the upstreams block.
func (c *Config) buildDiscovery(v *validator, b *Built) {
	f := c.File.Discovery
	if !f.Enabled {
		return
	}
	o := &proxy.DiscoveryOptions{Services: f.Services, ServerName: f.ServerName, MaxRealms: f.MaxRealms}
	for i, s := range f.Services {
		if s == "" || strings.ContainsAny(s, " \t") {
			v.errorf(fmt.Sprintf("discovery.services[%d]", i), "%q is not a NAPTR service tag (e.g. %s)", s, resolve.ServiceAuthTLS)
		}
	}
	if f.ServerName != "" && !strings.Contains(f.ServerName, "{realm}") {
		v.errorf("discovery.server_name", "%q must contain {realm}", f.ServerName)
	}
	durs := []struct {
		path     string
		d        Duration
		def      time.Duration
		min, max time.Duration
		dst      *time.Duration
	}{
		{"discovery.negative_ttl", f.NegativeTTL, proxy.DefaultDiscoveryNegativeTTL, time.Second, time.Hour, &o.NegativeTTL},
		{"discovery.idle_timeout", f.IdleTimeout, proxy.DefaultDiscoveryIdleTimeout, 10 * time.Second, 24 * time.Hour, &o.IdleTimeout},
	}
	for _, d := range durs {
		*d.dst = d.d.D(d.def)
		if *d.dst < d.min || *d.dst > d.max {
			v.errorf(d.path, "%v is outside %v..%v", *d.dst, d.min, d.max)
		}
	}
	if f.MaxRealms < 0 || f.MaxRealms > 100000 {
		v.errorf("discovery.max_realms", "%d is outside 1..100000", f.MaxRealms)
	}
	if len(b.Pool.Upstreams) > 0 {
		o.Upstream = b.Pool.Upstreams[0] // the upstreams block's timers, TLS and connection limit
	}
	o.Upstream.Secret = proxy.Secret(f.Secret)
	if f.TLS != nil {
		o.Upstream.TLS = c.clientTLS(v, "discovery.tls", *f.TLS)
		if o.Upstream.TLS != nil {
			b.Files = append(b.Files, c.abs(f.TLS.Certificate), c.abs(f.TLS.Key), c.abs(f.TLS.CA))
		}
	}
	if o.Upstream.TLS == nil {
		if f.TLS == nil {
			v.errorf("discovery.tls", "required without upstreams.tls")
		}
		return
	}
	b.Discovery = o
}
