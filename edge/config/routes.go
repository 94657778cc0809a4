package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mxedge/proxy"
)

// PoolFile is a named pool of upstreams a route can send requests to (`pools:`).
type PoolFile struct {
	Name        string           `yaml:"name"`
	Mode        string           `yaml:"mode"` // failover (default) | load-balance
	Servers     []PoolServerFile `yaml:"servers"`
	DeadAfter   Duration         `yaml:"dead_after"`      // default upstreams.dead_after (2s)
	StatusEvery Duration         `yaml:"status_interval"` // default upstreams.status_interval (1s)
}

// PoolServerFile is one upstream of a pool: RADIUS/UDP (the default) or RadSec with the
// `upstreams.tls` material.
type PoolServerFile struct {
	Name      string `yaml:"name"`
	Transport string `yaml:"transport"` // udp (default) | radsec
	// Address is IP[:port] for udp (port default 1812), host[:port] for radsec (default 2083).
	Address        string `yaml:"address"`
	AccountingPort int    `yaml:"accounting_port"` // udp: where Accounting-Requests go; default 1813, -1 none
	Secret         string `yaml:"secret"`
	SecretFile     string `yaml:"secret_file"`
	Priority       int    `yaml:"priority"`
	Source         string `yaml:"source"`       // udp: local address requests leave from
	SourcePorts    int    `yaml:"source_ports"` // udp: default 4 (1024 outstanding)
	// RequireMessageAuthenticator: udp replies without Message-Authenticator are discarded
	// (BlastRADIUS). Default true.
	RequireMessageAuthenticator *bool    `yaml:"require_message_authenticator"`
	RetransmitAfter             Duration `yaml:"retransmit_after"`  // udp: default 2s
	MaxTransmissions            int      `yaml:"max_transmissions"` // udp: default 3
}

// RouteFile is one routing rule (`routes:`), evaluated in order; the first that matches wins.
type RouteFile struct {
	Name          string   `yaml:"name"`
	Realms        []string `yaml:"realms"`         // exact, case-insensitive
	RealmSuffixes []string `yaml:"realm_suffixes"` // the realm or any under it
	RealmRegexps  []string `yaml:"realm_regexps"`  // whole realm, case-insensitive
	EmptyRealm    bool     `yaml:"empty_realm"`    // a User-Name without a realm
	Clients       []string `yaml:"clients"`        // NAS client names
	Sites         []string `yaml:"sites"`
	SSIDs         []string `yaml:"ssids"`   // from Called-Station-Id MAC:SSID
	Methods       []string `yaml:"methods"` // eap | pap | chap | mab
	Types         []string `yaml:"types"`   // auth | accounting
	// The target: exactly one of pool, discover and reject.
	Pool         string `yaml:"pool"` // a `pools:` name, or "default" for `upstreams`
	Discover     bool   `yaml:"discover"`
	Reject       bool   `yaml:"reject"`
	ReplyMessage string `yaml:"reply_message"` // with reject
	OperatorName string `yaml:"operator_name"` // "1" + FQDN, added when forwarding (RFC 5580)
	RequestCUI   bool   `yaml:"request_cui"`   // ask the home server for a CUI (RFC 4372)
	FTicks       bool   `yaml:"f_ticks"`       // log an F-Ticks line per answer
}

// EduroamFile is the eduroam preset (docs/routing.md): the institution's realms, the national
// servers and the Operator-Name are enough.
type EduroamFile struct {
	// Realms are the institution's own (home) realms, the guide's "Exclude Realms": their users,
	// at home or roaming, are authenticated by the cloud. Subdomains are included.
	Realms       []string `yaml:"realms"`
	OperatorName string   `yaml:"operator_name"` // "1" + FQDN, e.g. 1myuniversity.edu
	// SSIDs the visitors' flow applies to; default [eduroam].
	SSIDs []string `yaml:"ssids"`
	// NationalServers are the national roaming operator's RADIUS servers (RADIUS/UDP). Each is
	// also added as a NAS client, since it sends the home-roaming users' requests.
	NationalServers []PoolServerFile `yaml:"national_servers"`
	Mode            string           `yaml:"mode"`        // failover (default) | load-balance
	RequestCUI      *bool            `yaml:"request_cui"` // default true
	FTicks          *bool            `yaml:"f_ticks"`     // default true
	// VisitedCountry is F-Ticks' VISCOUNTRY (ISO 3166 alpha-2).
	VisitedCountry string `yaml:"visited_country"`
	// FTicksKeyFile holds a key under which F-Ticks carries a hash of Calling-Station-Id (CSI);
	// without it CSI is left out.
	FTicksKeyFile string `yaml:"f_ticks_key_file"`
	// FTicksSyslog ("IP:port") receives each F-Ticks line as a syslog message (RFC 5424 over
	// UDP), typically the local rsyslog on 127.0.0.1:514, which forwards them to the
	// federation's collector; FTicksFacility is its facility (default local1).
	FTicksSyslog   string `yaml:"f_ticks_syslog"`
	FTicksFacility string `yaml:"f_ticks_facility"`
	Site           string `yaml:"site"` // site of the national servers as NAS clients
}

// presetNames lists the eduroam preset's route names, for error messages.
const presetNames = "eduroam-home-roaming, eduroam-unknown-realm, eduroam-home, eduroam-no-realm, eduroam-visitor"

// EduroamPool is the name of the pool the preset makes of the national servers.
const EduroamPool = "eduroam-national"

func (c *Config) buildRoutes(v *validator, b *Built) {
	f := &c.File
	pools := map[string]bool{proxy.DefaultPoolName: true}
	for i := range f.Pools {
		path := fmt.Sprintf("pools[%d]", i)
		pf := &f.Pools[i]
		if pf.Name == "" || pf.Name == proxy.DefaultPoolName || pf.Name == EduroamPool {
			v.errorf(path+".name", "required, and not %q or %q", proxy.DefaultPoolName, EduroamPool)
			continue
		}
		if pools[pf.Name] {
			v.errorf(path+".name", "%q is used by another pool", pf.Name)
			continue
		}
		pools[pf.Name] = true
		b.Routes.Pools = append(b.Routes.Pools, proxy.NamedPool{Name: pf.Name, Options: c.buildNamedPool(v, b, path, path+".servers", pf)})
	}
	if e := f.Eduroam; e != nil {
		c.buildEduroam(v, b, e)
		pools[EduroamPool] = true
	}
	// A route's name labels its metrics, events and decision log lines: two of one name would be
	// one series counted twice.
	names := map[string]bool{}
	var preset []proxy.Route
	if f.Eduroam != nil {
		preset = c.eduroamRoutes(b, f.Eduroam)
		for _, r := range preset {
			names[r.Name] = true
		}
	}
	for i := range f.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		r, ok := c.buildRoute(v, path, &f.Routes[i], pools)
		if ok && names[r.Name] {
			v.errorf(path+".name", "%q is the name of another route (the eduroam preset's are %s)", r.Name, presetNames)
			continue
		}
		if ok {
			names[r.Name] = true
			b.Routes.Routes = append(b.Routes.Routes, r)
		}
	}
	// The preset's rules come after the operator's own, which may override them.
	b.Routes.Routes = append(b.Routes.Routes, preset...)
}

func (c *Config) buildNamedPool(v *validator, b *Built, path, serversPath string, pf *PoolFile) proxy.PoolOptions {
	po := proxy.PoolOptions{Mode: proxy.Mode(pf.Mode)}
	switch po.Mode {
	case "", proxy.ModeFailover, proxy.ModeLoadBalance:
	default:
		v.errorf(path+".mode", "%q is not one of failover, load-balance", pf.Mode)
	}
	if len(pf.Servers) == 0 {
		v.errorf(serversPath, "at least one server is required")
	}
	dead := pf.DeadAfter.D(proxy.DefaultDeadAfter)
	status := pf.StatusEvery.D(proxy.DefaultStatusInterval)
	if dead < 200*time.Millisecond || dead > time.Minute {
		v.errorf(path+".dead_after", "%v is outside 200ms..1m", dead)
	}
	if status < 100*time.Millisecond || status > time.Minute {
		v.errorf(path+".status_interval", "%v is outside 100ms..1m", status)
	}
	names := map[string]bool{}
	for i := range pf.Servers {
		sp := fmt.Sprintf("%s[%d]", serversPath, i)
		s := &pf.Servers[i]
		if s.Name == "" {
			v.errorf(sp+".name", "required")
		} else if names[s.Name] {
			v.errorf(sp+".name", "%q is used by another server of the pool", s.Name)
		}
		names[s.Name] = true
		if u, ok := c.buildPoolServer(v, b, sp, s); ok {
			u.DeadAfter, u.StatusInterval = dead, status
			po.Upstreams = append(po.Upstreams, u)
		}
	}
	return po
}

func (c *Config) buildPoolServer(v *validator, b *Built, path string, s *PoolServerFile) (proxy.UpstreamOptions, bool) {
	switch s.Transport {
	case "radsec":
		host, port, err := splitHostPort(s.Address, 2083)
		if err != nil {
			v.errorf(path+".address", "%v", err)
			return proxy.UpstreamOptions{}, false
		}
		if len(b.Pool.Upstreams) == 0 || b.Pool.Upstreams[0].TLS == nil {
			v.errorf(path+".transport", "radsec needs the upstreams.tls material")
			return proxy.UpstreamOptions{}, false
		}
		return proxy.UpstreamOptions{Name: s.Name, Host: host, Port: port, Priority: s.Priority,
			Secret: c.secret(v, path, s.Secret, s.SecretFile, "radsec"), TLS: b.Pool.Upstreams[0].TLS}, true
	case "", "udp":
	default:
		v.errorf(path+".transport", "%q is not one of udp, radsec", s.Transport)
		return proxy.UpstreamOptions{}, false
	}
	host, port, err := splitHostPort(s.Address, proxy.DefaultUDPPort)
	if err != nil {
		v.errorf(path+".address", "%v", err)
		return proxy.UpstreamOptions{}, false
	}
	if _, err := netip.ParseAddr(host); err != nil {
		v.errorf(path+".address", "%q: a RADIUS/UDP server needs an IP address", host)
		return proxy.UpstreamOptions{}, false
	}
	uo := &proxy.UDPOptions{SourcePorts: s.SourcePorts, RetransmitAfter: s.RetransmitAfter.D(0),
		MaxTransmissions: s.MaxTransmissions, AllowMissingMA: !boolOr(s.RequireMessageAuthenticator, true)}
	switch {
	case s.AccountingPort == 0:
		uo.AcctPort = 1813
	case s.AccountingPort > 0 && s.AccountingPort < 65536:
		uo.AcctPort = uint16(s.AccountingPort)
	case s.AccountingPort != -1:
		v.errorf(path+".accounting_port", "%d is not a port (or -1 for none)", s.AccountingPort)
	}
	if s.SourcePorts < 0 || s.SourcePorts > 64 {
		v.errorf(path+".source_ports", "%d is outside 1..64", s.SourcePorts)
	}
	if s.MaxTransmissions < 0 || s.MaxTransmissions > 10 {
		v.errorf(path+".max_transmissions", "%d is outside 1..10", s.MaxTransmissions)
	}
	if s.Source != "" {
		a, err := netip.ParseAddr(s.Source)
		if err != nil {
			v.errorf(path+".source", "%v", err)
		}
		uo.Source = a
	}
	return proxy.UpstreamOptions{Name: s.Name, Host: host, Port: port, Priority: s.Priority,
		Secret: c.secret(v, path, s.Secret, s.SecretFile, ""), UDP: uo}, true
}

func (c *Config) buildRoute(v *validator, path string, rf *RouteFile, pools map[string]bool) (proxy.Route, bool) {
	r := proxy.Route{Name: rf.Name, OperatorName: rf.OperatorName, RequestCUI: rf.RequestCUI, FTicks: rf.FTicks,
		ReplyMessage: rf.ReplyMessage}
	if r.Name == "" {
		r.Name = path
	}
	m := &r.Match
	for _, s := range rf.Realms {
		m.Realms = append(m.Realms, proxy.RealmMatch{Kind: proxy.RealmExact, Value: s})
	}
	for _, s := range rf.RealmSuffixes {
		m.Realms = append(m.Realms, proxy.RealmMatch{Kind: proxy.RealmSuffix, Value: s})
	}
	for _, s := range rf.RealmRegexps {
		m.Realms = append(m.Realms, proxy.RealmMatch{Kind: proxy.RealmRegexp, Value: s})
	}
	if rf.EmptyRealm {
		m.Realms = append(m.Realms, proxy.RealmMatch{Kind: proxy.RealmEmpty})
	}
	m.Clients, m.Sites, m.SSIDs = rf.Clients, rf.Sites, rf.SSIDs
	for _, s := range rf.Methods {
		m.Methods = append(m.Methods, proxy.Method(strings.ToLower(s)))
	}
	for _, s := range rf.Types {
		m.Types = append(m.Types, proxy.RequestType(strings.ToLower(s)))
	}
	targets := 0
	if rf.Pool != "" {
		targets++
		r.Target, r.Pool = proxy.TargetPool, rf.Pool
		if !pools[rf.Pool] {
			v.errorf(path+".pool", "no pool named %q (pools: or %q)", rf.Pool, proxy.DefaultPoolName)
		}
	}
	if rf.Discover {
		targets++
		r.Target = proxy.TargetDiscover
		if !c.File.Discovery.Enabled {
			v.errorf(path+".discover", "needs RFC 7585 dynamic discovery: set discovery.enabled: true (docs/dns.md)")
		}
	}
	if rf.Reject {
		targets++
		r.Target = proxy.TargetReject
	}
	if targets != 1 {
		v.errorf(path, "set exactly one of pool, discover, reject")
		return r, false
	}
	if rf.ReplyMessage != "" && !rf.Reject {
		v.errorf(path+".reply_message", "only with reject")
	}
	if rf.OperatorName != "" {
		if err := proxy.ValidateOperatorName(rf.OperatorName); err != nil {
			v.errorf(path+".operator_name", "%v", err)
		}
	}
	// The remaining checks (regexps, methods, types) are the component's own.
	one := proxy.RoutesOptions{Routes: []proxy.Route{r}}
	one.Routes[0].Target, one.Routes[0].Pool = proxy.TargetReject, ""
	if err := one.Validate(); err != nil {
		v.errorf(path, "%v", err)
		return r, false
	}
	return r, true
}
