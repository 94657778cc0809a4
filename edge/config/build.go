package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
	"mxedge/edge/decisionlog"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/dynauth"
	"mxedge/proxy/packet"
	"mxedge/proxy/resolve"
	"mxedge/survivability"
	"mxedge/survivability/spool"
)

// Defaults that are not the zero value of the components' options.
var (
	DefaultAuthAddrs = []string{"0.0.0.0:1812", "[::]:1812"}
	DefaultAcctAddrs = []string{"0.0.0.0:1813", "[::]:1813"}
)

// Vendors mxedge knows how to format replies for; "generic" speaks only RFC attributes.
var Vendors = []string{"generic", "cisco", "aruba", "hpe", "juniper", "mist", "paloalto", "fortinet", "extreme", "ruckus", "meraki"}

// Built is the configuration turned into component options.
type Built struct {
	LogLevel  slog.Level
	LogFormat string
	Server    proxy.ServerOptions
	Clients   []proxy.Client
	Pool      proxy.PoolOptions
	Routes    proxy.RoutesOptions // no Routes: everything goes to Pool
	Router    proxy.RouterOptions
	Listener  *proxy.ListenerOptions  // nil when no RadSec listener is configured
	Discovery *proxy.DiscoveryOptions // nil unless discovery.enabled; Resolver set by the edge
	DynAuth   dynauth.Options         // CoA/Disconnect relay (edge/config/dynauth.go)
	Reconcile Reconcile               // reconciliation after an outage (edge/config/dynauth.go)
	Cache     cache.Options
	Sessions  *session.Options // nil when the session table is off (sessions.enabled: false)
	Survival  Survival
	Control   string // control socket path
	Metrics   string // Prometheus listen address, "" for none
	DNS       DNSOptions
	Cluster   *Cluster // nil: this edge is alone
	// Dictionary names attributes: the built-in one with the `dictionaries:` files on top.
	Dictionary *packet.Dictionary
	// Identity is identity push (edge/config/identity.go); nil without sinks.
	Identity *Identity
	// Files are the certificate, key and CA files in use, for expiry warnings and reload on change.
	Files []string
	// DecisionLog is the access decision log's mode and rates (its Logger is the daemon's).
	DecisionLog decisionlog.Options
	// FTicksSyslog is where F-Ticks lines go as syslog messages (eduroam.f_ticks_syslog); nil:
	// only the log.
	FTicksSyslog *FTicksSyslog
}

// Survival is the survivability configuration.
type Survival struct {
	Spool  spool.Options
	EAPTLS *EAPTLS // nil: EAP is rejected while the cloud is unreachable
	// Enabled: the local decision engine runs, because the default or at least one site has
	// survivability on. Sites says per site.
	Enabled bool
	// Sites is the per-site policy; its Default is the survivability block itself.
	Sites            survivability.SiteTable
	DefaultMABVLAN   string
	DefaultDot1XVLAN string
	FailClosed       bool
	FailbackProbes   int
}

// EAPTLS is the local EAP-TLS server's material and policy.
type EAPTLS struct {
	Certificate   tls.Certificate
	Roots         *x509.CertPool
	Issuers       []*x509.Certificate
	MinVersion    uint16
	FragmentSize  int
	IdentityOrder []string
	CRLFiles      []string
	OCSP          bool
	Policy        pki.Policy
	// CertFile, KeyFile and CAFile are where the material above was read from: the files
	// certificate sync (edge/mgmt) replaces. KeyPassword decrypts KeyFile (nil for a plain key).
	CertFile, KeyFile, CAFile string
	KeyPassword               pki.Password
}

// DNSOptions configure upstream name resolution.
type DNSOptions struct {
	Servers []string
	Timeout time.Duration
}

// Built returns the component options; valid only after a successful Load/Parse.
func (c *Config) Built() *Built { return c.built }

func (c *Config) validate(v *validator) {
	f := &c.File
	b := &Built{}
	c.built = b

	switch strings.ToLower(f.Log.Level) {
	case "", "info":
		b.LogLevel = slog.LevelInfo
	case "debug":
		b.LogLevel = slog.LevelDebug
	case "warn", "warning":
		b.LogLevel = slog.LevelWarn
	case "error":
		b.LogLevel = slog.LevelError
	default:
		v.errorf("log.level", "%q is not one of debug, info, warn, error", f.Log.Level)
	}
	switch f.Log.Format {
	case "", "auto", "text", "json":
		b.LogFormat = f.Log.Format
	default:
		v.errorf("log.format", "%q is not one of auto, text, json", f.Log.Format)
	}
	c.buildDecisionLog(v, b)

	b.Dictionary = packet.Builtin()
	for i, p := range f.Dictionaries {
		d, err := b.Dictionary.Load(c.abs(p))
		if err != nil {
			v.errorf(fmt.Sprintf("dictionaries[%d]", i), "%v", err)
			continue
		}
		b.Dictionary = d
	}

	b.Server = proxy.ServerOptions{
		AuthAddrs:       orDefault(f.Listen.Auth, DefaultAuthAddrs),
		AcctAddrs:       orDefault(f.Listen.Acct, DefaultAcctAddrs),
		RequestTimeout:  f.RequestTimeout.D(proxy.DefaultRequestTimeout),
		DuplicateWindow: f.DuplicateWindow.D(proxy.DefaultDuplicateWindow),
	}
	b.Server.DuplicateCacheSize, b.Server.Sockets, b.Server.SplitBatch = f.DuplicateCacheSize, f.Listen.Sockets, f.Listen.SplitBatch
	for i, a := range f.Listen.Auth {
		checkNASListen(v, fmt.Sprintf("listen.auth[%d]", i), a)
	}
	for i, a := range f.Listen.Acct {
		checkNASListen(v, fmt.Sprintf("listen.acct[%d]", i), a)
	}
	if t := b.Server.RequestTimeout; t < 500*time.Millisecond || t > 60*time.Second {
		v.errorf("request_timeout", "%v is outside 500ms..60s", t)
	}
	if w := b.Server.DuplicateWindow; w < time.Second || w > 5*time.Minute {
		v.errorf("duplicate_window", "%v is outside 1s..5m", w)
	}
	if n := f.Listen.Sockets; n < 0 || n > proxy.MaxSockets {
		v.errorf("listen.sockets", "%d is outside 1..%d", n, proxy.MaxSockets)
	}
	if n := f.Listen.SplitBatch; n != 0 && (n < 2 || n > 32) {
		v.errorf("listen.split_batch", "%d is outside 2..32 (0: never split)", n)
	}
	if n := f.DuplicateCacheSize; n != 0 && (n < 1024 || n > 10_000_000) {
		v.errorf("duplicate_cache_size", "%d is outside 1024..10000000", n)
	}
	switch proxy.NoUpstreamPolicy(f.NoUpstream) {
	case "", proxy.NoUpstreamReject, proxy.NoUpstreamDrop:
		b.Router.NoUpstream = proxy.NoUpstreamPolicy(f.NoUpstream)
	default:
		v.errorf("no_upstream", "%q is not one of reject, drop", f.NoUpstream)
	}

	names := map[string]bool{}
	seen := map[netip.Prefix]string{}
	var clientPaths []string
	var clientPrefixes []netip.Prefix
	for i, cf := range f.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		cl := proxy.Client{Name: cf.Name, Vendor: strings.ToLower(cf.Vendor), Site: cf.Site,
			RequireMessageAuthenticator: boolOr(cf.RequireMessageAuthenticator, true),
			LimitProxyState:             boolOr(cf.LimitProxyState, true)}
		if cf.Name == "" {
			v.errorf(path+".name", "required")
		} else if names[cf.Name] {
			v.errorf(path+".name", "%q is used by another client", cf.Name)
		}
		names[cf.Name] = true
		pfx, err := parsePrefix(cf.Address)
		if err != nil {
			v.errorf(path+".address", "%v", err)
		} else if other, dup := seen[pfx]; dup {
			v.errorf(path+".address", "%s is also client %q", pfx, other)
		} else {
			seen[pfx] = cf.Name
		}
		cl.Prefix = pfx
		cl.Secret = c.secret(v, path, cf.Secret, cf.SecretFile, "")
		if cf.SecretFile != "" {
			v.weakSecret(path+".secret_file", cl.Secret)
		} else {
			v.weakSecret(path+".secret", cl.Secret)
		}
		clientPaths, clientPrefixes = append(clientPaths, path+".address"), append(clientPrefixes, pfx)
		if cl.Vendor == "" {
			cl.Vendor = "generic"
		} else if !contains(Vendors, cl.Vendor) {
			v.errorf(path+".vendor", "%q is not one of %s", cf.Vendor, strings.Join(Vendors, ", "))
		}
		b.Clients = append(b.Clients, cl)
	}
	v.overlappingPrefixes(clientPaths, clientPrefixes)

	c.buildPool(v, b)
	c.buildDiscovery(v, b)
	c.buildRoutes(v, b)
	c.buildListener(v, b)
	c.buildDynAuth(v, b)
	c.buildCache(v, b)
	c.buildSessions(v, b)
	c.buildSurvival(v, b)
	c.buildCluster(v, b)
	c.buildIdentity(v, b)
	b.Metrics = "127.0.0.1:9812"
	if m := c.File.Metrics.Listen; m != nil {
		b.Metrics = *m
		if *m != "" {
			checkListen(v, "metrics.listen", *m)
		}
	}
	b.Control = c.abs(c.File.Control.Socket)
	if b.Control == "" {
		b.Control = DefaultControlSocket
	}
}

// DefaultControlSocket is where the daemon listens for the CLI (systemd RuntimeDirectory=mxedge).
const DefaultControlSocket = "/run/mxedge/control.sock"

func (c *Config) buildSurvival(v *validator, b *Built) {
	f := &c.File.Survivability
	s := Survival{Enabled: boolOr(f.Enabled, true), DefaultMABVLAN: f.DefaultMABVLAN, DefaultDot1XVLAN: f.DefaultDot1XVLAN, FailbackProbes: f.FailbackProbes}
	switch f.Failmode {
	case "", "open":
	case "closed":
		s.FailClosed = true
	default:
		v.errorf("survivability.failmode", "%q is not open or closed", f.Failmode)
	}
	s.Spool = spool.Options{Path: c.abs(f.Spool.Path), MaxRecords: f.Spool.MaxRecords}
	if s.Spool.Path == "" {
		// Next to the cache: both belong to the state directory.
		s.Spool.Path = filepath.Join(filepath.Dir(b.Cache.Path), "spool.db")
	}
	if f.Spool.MaxBytes != "" {
		n, err := parseBytes(f.Spool.MaxBytes)
		if err != nil {
			v.errorf("survivability.spool.max_bytes", "%v", err)
		}
		s.Spool.MaxBytes = n
	}
	if err := s.Spool.Validate(); err != nil {
		v.errorf("survivability.spool", "%v", err)
	}
	if dir := filepath.Dir(s.Spool.Path); f.Spool.Path != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			v.errorf("survivability.spool.path", "directory %s does not exist", dir)
		}
	}
	if t := f.EAPTLS; t.Certificate != "" || t.Key != "" || t.CA != "" {
		s.EAPTLS = c.buildEAPTLS(v, t)
		b.Files = append(b.Files, c.abs(t.Certificate), c.abs(t.Key), c.abs(t.CA))
		if t.KeyPassphraseFile != "" {
			b.Files = append(b.Files, c.abs(t.KeyPassphraseFile))
		}
	}
	checkVLAN(v, "survivability.default_mab_vlan", f.DefaultMABVLAN)
	checkVLAN(v, "survivability.default_dot1x_vlan", f.DefaultDot1XVLAN)
	c.buildSites(v, b, &s)
	if s.FailbackProbes == 0 {
		s.FailbackProbes = survivability.DefaultFailbackProbes
	} else if s.FailbackProbes < 1 || s.FailbackProbes > 100 {
		v.errorf("survivability.failback_probes", "%d is outside 1..100", f.FailbackProbes)
	}
	b.Survival = s
}

func (c *Config) buildEAPTLS(v *validator, t EAPTLSFile) *EAPTLS {
	const path = "survivability.eap_tls"
	pair, pool, minVer, ok := c.loadTLS(v, path, TLSFile{Certificate: t.Certificate, Key: t.Key, KeyPassphraseFile: t.KeyPassphraseFile, CA: t.CA, MinVersion: t.MinVersion})
	e := &EAPTLS{Certificate: pair, Roots: pool, MinVersion: minVer, FragmentSize: t.FragmentSize, IdentityOrder: t.IdentityOrder, OCSP: t.OCSP,
		CertFile: c.abs(t.Certificate), KeyFile: c.abs(t.Key), CAFile: c.abs(t.CA)}
	if t.KeyPassphraseFile != "" {
		e.KeyPassword, _ = c.keyPassphrase(&validator{}, path, t.KeyPassphraseFile) // loadTLS reported its errors
	}
	if t.FragmentSize != 0 && (t.FragmentSize < 64 || t.FragmentSize > 3000) {
		v.errorf(path+".fragment_size", "%d is outside 64..3000", t.FragmentSize)
	}
	for i, id := range t.IdentityOrder {
		switch id {
		case "cn", "upn", "email", "dns":
		default:
			v.errorf(fmt.Sprintf("%s.identity_order[%d]", path, i), "%q is not one of cn, upn, email, dns", id)
		}
	}
	for i, f := range t.CRLFiles {
		p := c.abs(f)
		if _, err := os.Stat(p); err != nil {
			v.errorf(fmt.Sprintf("%s.crl_files[%d]", path, i), "%v", err)
		}
		e.CRLFiles = append(e.CRLFiles, p)
	}
	e.Policy = pki.SoftFail
	if t.Revocation != "" {
		p, err := pki.ParsePolicy(t.Revocation)
		if err != nil {
			v.errorf(path+".revocation", "%q is not soft-fail or hard-fail", t.Revocation)
		}
		e.Policy = p
	}
	// hard-fail with nothing to check against would build no checker: revocation off while the
	// file says it is mandatory (docs/decisions.md, "Revocation sources").
	if e.Policy == pki.HardFail && len(t.CRLFiles) == 0 && !t.OCSP {
		v.errorf(path+".revocation", "hard-fail needs a revocation source: list crl_files or set ocsp: true (without one no certificate is checked)")
	}
	if ok {
		if certs, err := pki.LoadCertificates(c.abs(t.CA)); err == nil {
			e.Issuers = certs
		}
	}
	return e
}

// parseBytes reads sizes like 512MiB, 1GiB, 64KiB or a plain number of bytes.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%q is not a size (write 512MiB)", s)
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (write 512MiB)", s)
	}
	return n, nil
}

// checkVLAN accepts a VLAN ID 1..4094 (IEEE 802.1Q) or a VLAN name (RFC 3580 §3.31: the
// Tunnel-Private-Group-ID is a string, and NAS vendors map names to VLANs).
func checkVLAN(v *validator, path, s string) {
	if s == "" {
		return
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 4094 {
			v.errorf(path, "VLAN ID %d is outside 1..4094", n)
		}
		return
	}
	if len(s) > 32 || strings.ContainsAny(s, " \t\n\"'") {
		v.errorf(path, "%q is not a VLAN ID or name (up to 32 characters, no spaces or quotes)", s)
	}
}

func (c *Config) buildCache(v *validator, b *Built) {
	f := &c.File.Cache
	b.Cache = cache.Options{Path: c.abs(f.Path), TTL: f.TTL.D(cache.DefaultTTL),
		MaxEntries: f.MaxEntries, Protect: f.Protect.D(0)}
	if b.Cache.Path == "" {
		b.Cache.Path = cache.DefaultPath
	}
	if b.Cache.MaxEntries == 0 {
		b.Cache.MaxEntries = cache.DefaultMaxEntries
	}
	if b.Cache.Protect == 0 {
		b.Cache.Protect = min(cache.DefaultProtect, b.Cache.TTL)
	}
	if t := b.Cache.TTL; t < cache.MinTTL || t > cache.MaxTTL {
		v.errorf("cache.ttl", "%v is outside 1d..30d (write 7d)", f.TTL.D(0))
	}
	if n := b.Cache.MaxEntries; n < 1 || n > cache.MaxMaxEntries {
		v.errorf("cache.max_entries", "%d is outside 1..%d", n, cache.MaxMaxEntries)
	}
	if p := b.Cache.Protect; p < cache.MinProtect || p > b.Cache.TTL {
		v.errorf("cache.protect", "%v is outside 1m..cache.ttl (%v)", p, b.Cache.TTL)
	}
	// The file itself is not opened: a running mxedge holds its lock while `check` runs on reload.
	dir := filepath.Dir(b.Cache.Path)
	if st, err := os.Stat(dir); err != nil {
		v.errorf("cache.path", "directory %s: %v", dir, err)
	} else if !st.IsDir() {
		v.errorf("cache.path", "%s is not a directory", dir)
	}
}

func (c *Config) buildPool(v *validator, b *Built) {
	u := &c.File.Upstreams
	switch proxy.Mode(u.Mode) {
	case "", proxy.ModeFailover, proxy.ModeLoadBalance:
	default:
		v.errorf("upstreams.mode", "%q is not one of failover, load-balance", u.Mode)
	}
	b.Pool.Mode = proxy.Mode(u.Mode)
	if len(u.Servers) == 0 {
		v.errorf("upstreams.servers", "at least one upstream is required")
		return
	}
	tlsCfg := c.clientTLS(v, "upstreams.tls", u.TLS)
	durs := []struct {
		path     string
		d        Duration
		def      time.Duration
		min, max time.Duration
	}{
		{"upstreams.dial_timeout", u.DialTimeout, proxy.DefaultDialTimeout, 100 * time.Millisecond, 30 * time.Second},
		{"upstreams.dead_after", u.DeadAfter, proxy.DefaultDeadAfter, 200 * time.Millisecond, 60 * time.Second},
		{"upstreams.status_interval", u.StatusInterval, proxy.DefaultStatusInterval, 100 * time.Millisecond, 60 * time.Second},
		{"upstreams.backoff_min", u.BackoffMin, proxy.DefaultBackoffMin, 10 * time.Millisecond, time.Minute},
		{"upstreams.backoff_max", u.BackoffMax, proxy.DefaultBackoffMax, 100 * time.Millisecond, 10 * time.Minute},
		{"upstreams.stall_after", u.StallAfter, proxy.DefaultStallAfter, 50 * time.Millisecond, 10 * time.Second},
	}
	vals := make([]time.Duration, len(durs))
	for i, d := range durs {
		vals[i] = d.d.D(d.def)
		if vals[i] < d.min || vals[i] > d.max {
			v.errorf(d.path, "%v is outside %v..%v", vals[i], d.min, d.max)
		}
	}
	if vals[3] > vals[4] {
		v.errorf("upstreams.backoff_min", "%v is above backoff_max %v", vals[3], vals[4])
	}
	if u.MaxConnections < 0 || u.MaxConnections > 64 {
		v.errorf("upstreams.max_connections", "%d is outside 1..64", u.MaxConnections)
	}
	names := map[string]bool{}
	for i, s := range u.Servers {
		path := fmt.Sprintf("upstreams.servers[%d]", i)
		if s.Name == "" {
			v.errorf(path+".name", "required")
		} else if names[s.Name] {
			v.errorf(path+".name", "%q is used by another upstream", s.Name)
		}
		names[s.Name] = true
		host, port, err := splitHostPort(s.Address, 2083)
		if err != nil {
			v.errorf(path+".address", "%v", err)
		}
		secret := s.Secret
		if secret == "" {
			secret = "radsec"
		}
		b.Pool.Upstreams = append(b.Pool.Upstreams, proxy.UpstreamOptions{
			Name: s.Name, Host: host, Port: port, SRV: s.SRV, VerifySRVTarget: s.VerifySRVTarget, ServerName: s.ServerName,
			Priority: s.Priority, Secret: proxy.Secret(secret), TLS: tlsCfg, MaxConnections: u.MaxConnections,
			DialTimeout: vals[0], DeadAfter: vals[1], StatusInterval: vals[2], BackoffMin: vals[3], BackoffMax: vals[4],
			StallAfter: vals[5], Source: source(v, path, u.Source, s.Source), BindDevice: bindDevice(v, path, u.BindDevice, s.BindDevice),
		})
	}
	b.DNS = DNSOptions{Servers: u.DNS.Servers, Timeout: u.DNS.Timeout.D(resolve.DefaultTimeout)}
	for i, s := range u.DNS.Servers {
		if _, _, err := splitHostPort(s, 53); err != nil {
			v.errorf(fmt.Sprintf("upstreams.dns.servers[%d]", i), "%v", err)
		}
	}
	if tlsCfg != nil {
		b.Files = append(b.Files, c.abs(u.TLS.Certificate), c.abs(u.TLS.Key), c.abs(u.TLS.CA))
	}
}

func (c *Config) buildListener(v *validator, b *Built) {
	r := &c.File.RadSec
	if len(r.Listen) == 0 {
		if len(r.Peers) > 0 {
			v.errorf("radsec.peers", "peers are configured but radsec.listen is empty")
		}
		return
	}
	for i, a := range r.Listen {
		checkNASListen(v, fmt.Sprintf("radsec.listen[%d]", i), a)
	}
	cfg := c.serverTLS(v, "radsec.tls", r.TLS)
	lo := &proxy.ListenerOptions{Addrs: r.Listen, TLS: cfg, IdleTimeout: r.IdleTimeout.D(proxy.DefaultIdleTimeout),
		MaxConnsPerPeer: r.MaxConnsPerPeer, MaxInFlightPerPeer: r.MaxInFlightPerPeer}
	if len(r.Peers) == 0 {
		v.errorf("radsec.peers", "at least one peer is required when radsec.listen is set")
	}
	if t := lo.IdleTimeout; t < 10*time.Second || t > 24*time.Hour {
		v.errorf("radsec.idle_timeout", "%v is outside 10s..24h", t)
	}
	if n := r.MaxConnsPerPeer; n < 0 || n > 1024 {
		v.errorf("radsec.max_connections_per_peer", "%d is outside 1..1024", n)
	}
	if n := r.MaxInFlightPerPeer; n < 0 || n > 65536 {
		v.errorf("radsec.max_in_flight_per_peer", "%d is outside 1..65536", n)
	}
	for i, p := range r.Peers {
		path := fmt.Sprintf("radsec.peers[%d]", i)
		if p.Name == "" {
			v.errorf(path+".name", "required")
		}
		pfx, err := parsePrefix(p.Address)
		if err != nil {
			v.errorf(path+".address", "%v", err)
		}
		checkCertNames(v, path+".cert_names", p.CertNames)
		secret := p.Secret
		if secret == "" {
			secret = "radsec"
		}
		vendor := strings.ToLower(p.Vendor)
		if vendor == "" {
			vendor = "generic"
		}
		lo.Peers = append(lo.Peers, proxy.RadSecPeer{
			Client: proxy.Client{Name: p.Name, Prefix: pfx, Secret: proxy.Secret(secret), Vendor: vendor, Site: p.Site,
				// Over TLS BlastRADIUS has no purchase; Message-Authenticator stays optional.
				RequireMessageAuthenticator: false},
			CertNames:            p.CertNames,
			DynamicAuthorization: p.DynamicAuthorization,
		})
	}
	b.Listener = lo
	if cfg != nil {
		b.Files = append(b.Files, c.abs(r.TLS.Certificate), c.abs(r.TLS.Key), c.abs(r.TLS.CA))
	}
}

// checkCertNames requires the names a peer certificate must carry: the CA that signs NAS
// certificates often signs laptops too, and with no name any of them would pass as a NAS. "*"
// accepts any certificate the CA verifies, on purpose.
func checkCertNames(v *validator, path string, names []string) {
	if len(names) == 0 {
		v.errorf(path, "required: the names the peer certificate carries (SAN DNS, email, URI, IP, else the CN), or [%q] to accept any certificate the CA verifies", proxy.AnyCertName)
		return
	}
	for i, n := range names {
		switch {
		case strings.TrimSpace(n) == "":
			v.errorf(fmt.Sprintf("%s[%d]", path, i), "empty name")
		case n == proxy.AnyCertName && len(names) > 1:
			v.errorf(fmt.Sprintf("%s[%d]", path, i), "%q accepts any certificate: list it alone", proxy.AnyCertName)
		}
	}
}

// secret returns the inline secret or the content of secret_file (trailing newline trimmed).
func (c *Config) secret(v *validator, path, inline, file, def string) proxy.Secret {
	switch {
	case inline != "" && file != "":
		v.errorf(path+".secret", "set secret or secret_file, not both")
	case inline != "":
		return proxy.Secret(inline)
	case file != "":
		data, err := os.ReadFile(c.abs(file))
		if err != nil {
			v.errorf(path+".secret_file", "%v", err)
			return nil
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			v.errorf(path+".secret_file", "%s is empty", file)
		}
		return proxy.Secret(s)
	case def != "":
		return proxy.Secret(def)
	default:
		v.errorf(path+".secret", "required (or secret_file)")
	}
	return nil
}

func (c *Config) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (c *Config) loadTLS(v *validator, path string, t TLSFile) (tls.Certificate, *x509.CertPool, uint16, bool) {
	ok := true
	if t.Certificate == "" {
		v.errorf(path+".certificate", "required")
		ok = false
	}
	if t.Key == "" {
		v.errorf(path+".key", "required")
		ok = false
	}
	if t.CA == "" {
		v.errorf(path+".ca", "required: the CA bundle that verifies the peer")
		ok = false
	}
	minVer := uint16(tls.VersionTLS12)
	switch t.MinVersion {
	case "", "1.2":
	case "1.3":
		minVer = tls.VersionTLS13
	default:
		v.errorf(path+".min_version", "%q is not 1.2 or 1.3", t.MinVersion)
	}
	if !ok {
		return tls.Certificate{}, nil, 0, false
	}
	password, pok := c.keyPassphrase(v, path, t.KeyPassphraseFile)
	if !pok {
		return tls.Certificate{}, nil, 0, false
	}
	pair, err := pki.LoadKeyPairWithPassword(c.abs(t.Certificate), c.abs(t.Key), password)
	switch {
	case password == nil && (errors.Is(err, pki.ErrEncryptedKey) || errors.Is(err, pki.ErrBadPassword)):
		v.errorf(path+".key", "%s is passphrase-protected: set %s.key_passphrase_file", t.Key, path)
		ok = false
	case errors.Is(err, pki.ErrBadPassword):
		v.errorf(path+".key_passphrase_file", "the passphrase in %s does not decrypt %s", t.KeyPassphraseFile, t.Key)
		ok = false
	case err != nil:
		v.errorf(path+".certificate", "%v", err)
		ok = false
	case pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter):
		leaf := pair.Leaf
		v.errorf(path+".certificate", "%s expired on %s", t.Certificate, leaf.NotAfter.Format(time.DateOnly))
		ok = false
	}
	certs, err := pki.LoadCertificates(c.abs(t.CA))
	if err != nil {
		v.errorf(path+".ca", "%v", err)
		return pair, nil, minVer, false
	}
	pool := x509.NewCertPool()
	for _, ca := range certs {
		if time.Now().After(ca.NotAfter) {
			v.errorf(path+".ca", "%s: %q expired on %s", t.CA, ca.Subject.CommonName, ca.NotAfter.Format(time.DateOnly))
			ok = false
		}
		pool.AddCert(ca)
	}
	return pair, pool, minVer, ok
}

// keyPassphrase reads a private key's passphrase from file (its first line, without the line
// end), or returns nil for "". It is a pki.Password, which never prints.
func (c *Config) keyPassphrase(v *validator, path, file string) (pki.Password, bool) {
	if file == "" {
		return nil, true
	}
	b, err := os.ReadFile(c.abs(file))
	if err != nil {
		v.errorf(path+".key_passphrase_file", "%v", err)
		return nil, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		v.errorf(path+".key_passphrase_file", "%s is empty", file)
		return nil, false
	}
	return pki.Password(line), true
}

func (c *Config) clientTLS(v *validator, path string, t TLSFile) *tls.Config {
	checkRADIUSVersion(v, path, t)
	pair, pool, minVer, ok := c.loadTLS(v, path, t)
	if !ok {
		return nil
	}
	return hybridKEX(v, path, t, &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   minVer,
		CipherSuites: proxy.RadSecCipherSuites(),
	})
}

func (c *Config) serverTLS(v *validator, path string, t TLSFile) *tls.Config {
	checkRADIUSVersion(v, path, t)
	pair, pool, minVer, ok := c.loadTLS(v, path, t)
	if !ok {
		return nil
	}
	return hybridKEX(v, path, t, &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   minVer,
		CipherSuites: proxy.RadSecCipherSuites(),
	})
}

// checkListen accepts host:port; port 0 (an ephemeral port, for tests and labs) is allowed.
func checkListen(v *validator, path, a string) {
	host, ps, err := net.SplitHostPort(a)
	if err != nil {
		v.errorf(path, "%q is not host:port (write 0.0.0.0:1812 or [::]:1812)", a)
		return
	}
	if _, err := strconv.ParseUint(ps, 10, 16); err != nil {
		v.errorf(path, "%q: bad port %q", a, ps)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			v.errorf(path, "%q: listen on an IP address, not a name", a)
		}
	}
}

// splitHostPort accepts host, host:port, [v6]:port and bare IPv6; port def applies when missing.
func splitHostPort(s string, def uint16) (string, uint16, error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty address")
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if def == 0 {
			return "", 0, fmt.Errorf("%q has no port", s)
		}
		return ip.String(), def, nil
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		if def == 0 || strings.Contains(s, ":") {
			return "", 0, fmt.Errorf("%q is not host:port", s)
		}
		return s, def, nil
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("%q: bad port %q", s, ps)
	}
	return host, uint16(port), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("required: an IP address or CIDR")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func orDefault(v, def []string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
