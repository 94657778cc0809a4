package config

import (
	"fmt"
	"net/netip"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/dynauth"
)

// DynAuthFile configures RFC 5176 Dynamic Authorization (CoA and Disconnect): the listener for
// on-prem CoA clients and how requests are relayed to NASes. CoA from the cloud over the RadSec
// upstreams is relayed whether or not this block is present.
type DynAuthFile struct {
	// Listen are the UDP addresses of the listener; default ["0.0.0.0:3799", "[::]:3799"] when
	// clients are configured, none otherwise.
	Listen []string `yaml:"listen"`
	// Source is the address requests to NASes leave from; default any.
	Source         string          `yaml:"source"`
	Timeout        Duration        `yaml:"timeout"`         // wait for the NAS's first answer, doubled per retry; default 1s
	Retries        *int            `yaml:"retries"`         // retransmissions before NAK 506; default 3
	MaxOutstanding int             `yaml:"max_outstanding"` // requests waiting on one NAS; default 64, at most 256
	Clients        []DynAuthClient `yaml:"clients"`
	Reconcile      ReconcileFile   `yaml:"reconcile"`
}

// ReconcileFile configures reconciliation after an outage: sessions admitted locally are
// re-authorized through the cloud after failback (docs/coa.md).
type ReconcileFile struct {
	Enabled *bool   `yaml:"enabled"` // default true
	Rate    float64 `yaml:"rate"`    // requests per second, default 10, at most 1000
	// Fallback is what a session on a NAS whose vendor defines no reauthenticate CoA gets:
	// disconnect (default; the client reconnects through the cloud) or none.
	Fallback string              `yaml:"fallback"`
	Sites    []ReconcileSiteFile `yaml:"sites"`
}

// ReconcileSiteFile overrides enabled and fallback for one site.
type ReconcileSiteFile struct {
	Name     string `yaml:"name"`
	Enabled  *bool  `yaml:"enabled"`
	Fallback string `yaml:"fallback"`
}

// Reconcile is reconciliation as built: the reconciler's options without its runtime parts.
type Reconcile struct {
	Rate  float64
	Sites map[string]dynauth.SitePolicy
	// Default is the policy of sites not listed.
	Default dynauth.SitePolicy
}

// Policy returns a site's policy.
func (r Reconcile) Policy(site string) dynauth.SitePolicy {
	if p, ok := r.Sites[site]; ok {
		return p
	}
	return r.Default
}

func fallbackDisconnect(v *validator, path, s string, def bool) bool {
	switch s {
	case "":
		return def
	case "disconnect":
		return true
	case "none":
		return false
	}
	v.errorf(path, "%q is not one of disconnect, none", s)
	return def
}

func (c *Config) buildReconcile(v *validator, b *Built) {
	f := &c.File.DynamicAuthorization.Reconcile
	r := Reconcile{Rate: f.Rate, Sites: map[string]dynauth.SitePolicy{}}
	if r.Rate == 0 {
		r.Rate = 10
	}
	if r.Rate < 0.1 || r.Rate > 1000 {
		v.errorf("dynamic_authorization.reconcile.rate", "%v is outside 0.1..1000 per second", f.Rate)
	}
	r.Default = dynauth.SitePolicy{Enabled: boolOr(f.Enabled, true),
		Disconnect: fallbackDisconnect(v, "dynamic_authorization.reconcile.fallback", f.Fallback, true)}
	sites := map[string]bool{}
	for _, cf := range c.File.Clients {
		sites[cf.Site] = true
	}
	for i, sf := range f.Sites {
		path := fmt.Sprintf("dynamic_authorization.reconcile.sites[%d]", i)
		if sf.Name == "" {
			v.errorf(path+".name", "required")
			continue
		}
		if _, dup := r.Sites[sf.Name]; dup {
			v.errorf(path+".name", "%q is listed twice", sf.Name)
		}
		if !sites[sf.Name] {
			v.errorf(path+".name", "no NAS client is at site %q", sf.Name)
		}
		r.Sites[sf.Name] = dynauth.SitePolicy{Enabled: boolOr(sf.Enabled, r.Default.Enabled),
			Disconnect: fallbackDisconnect(v, path+".fallback", sf.Fallback, r.Default.Disconnect)}
	}
	b.Reconcile = r
}

// DynAuthClient is an on-prem system allowed to send CoA-Request and Disconnect-Request.
type DynAuthClient struct {
	Name                        string `yaml:"name"`
	Address                     string `yaml:"address"` // IP or CIDR
	Secret                      string `yaml:"secret"`
	SecretFile                  string `yaml:"secret_file"`
	RequireMessageAuthenticator *bool  `yaml:"require_message_authenticator"` // default true
	LimitProxyState             *bool  `yaml:"limit_proxy_state"`             // default true
}

// DefaultDynAuthAddrs are the listener's addresses when clients are configured.
var DefaultDynAuthAddrs = []string{"0.0.0.0:3799", "[::]:3799"}

// buildDynAuth turns dynamic_authorization and the NAS clients into the relay's options.
func (c *Config) buildDynAuth(v *validator, b *Built) {
	f := &c.File.DynamicAuthorization
	o := dynauth.Options{Source: f.Source, Timeout: f.Timeout.D(dynauth.DefaultTimeout), MaxOutstanding: f.MaxOutstanding}
	if f.Retries != nil {
		o.Retries = *f.Retries
		if o.Retries == 0 {
			o.Retries = -1 // none
		}
		if *f.Retries < 0 || *f.Retries > 10 {
			v.errorf("dynamic_authorization.retries", "%d is outside 0..10", *f.Retries)
		}
	}
	if o.Timeout < 100*time.Millisecond || o.Timeout > 30*time.Second {
		v.errorf("dynamic_authorization.timeout", "%v is outside 100ms..30s", o.Timeout)
	}
	if o.MaxOutstanding < 0 || o.MaxOutstanding > 256 {
		v.errorf("dynamic_authorization.max_outstanding", "%d is outside 1..256", o.MaxOutstanding)
	}
	if f.Source != "" {
		if _, err := netip.ParseAddrPort(f.Source); err != nil {
			v.errorf("dynamic_authorization.source", "%q is not IP:port (write 0.0.0.0:0 for any)", f.Source)
		}
	}
	o.Listen = f.Listen
	if len(o.Listen) == 0 && len(f.Clients) > 0 {
		o.Listen = DefaultDynAuthAddrs
	}
	for i, a := range f.Listen {
		path := fmt.Sprintf("dynamic_authorization.listen[%d]", i)
		if _, err := netip.ParseAddrPort(a); err != nil {
			v.errorf(path, "%q is not IP:port (write 0.0.0.0:3799 or [::]:3799)", a)
		}
	}
	names := map[string]bool{}
	seen := map[netip.Prefix]string{}
	for i, cf := range f.Clients {
		path := fmt.Sprintf("dynamic_authorization.clients[%d]", i)
		cl := proxy.Client{Name: cf.Name,
			RequireMessageAuthenticator: boolOr(cf.RequireMessageAuthenticator, true),
			LimitProxyState:             boolOr(cf.LimitProxyState, true)}
		if cf.Name == "" {
			v.errorf(path+".name", "required")
		} else if names[cf.Name] {
			v.errorf(path+".name", "%q is used by another dynamic authorization client", cf.Name)
		}
		names[cf.Name] = true
		pfx, err := parsePrefix(cf.Address)
		if err != nil {
			v.errorf(path+".address", "%v", err)
		} else if other, dup := seen[pfx]; dup {
			v.errorf(path+".address", "%s is also dynamic authorization client %q", pfx, other)
		} else {
			seen[pfx] = cf.Name
		}
		cl.Prefix = pfx
		cl.Secret = c.secret(v, path, cf.Secret, cf.SecretFile, "")
		o.Clients = append(o.Clients, cl)
	}
	for i, cl := range b.Clients {
		port := 0
		if i < len(c.File.Clients) { // the eduroam preset's national servers come after the file's clients
			port = c.File.Clients[i].CoAPort
		}
		if port < 0 || port > 65535 {
			v.errorf(fmt.Sprintf("clients[%d].coa_port", i), "%d is not a port", port)
			port = 0
		}
		o.NASes = append(o.NASes, dynauth.NAS{Name: cl.Name, Prefix: cl.Prefix, Secret: cl.Secret,
			CoAPort: uint16(port), Vendor: cl.Vendor, Site: cl.Site})
	}
	b.DynAuth = o
	c.buildReconcile(v, b)
}
