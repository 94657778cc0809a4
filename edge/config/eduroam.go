package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"mxedge/proxy"
)

// The eduroam preset (docs/routing.md) expands into a pool of the national
// servers, a NAS client per national server, and these routes, after the operator's own:
//
//  1. eduroam-home-roaming: from a national server, a home realm -> the cloud (the IdP flow);
//  2. eduroam-unknown-realm: from a national server, any other realm -> Access-Reject, so the
//     federation hears "no" rather than silence;
//  3. eduroam-home: on an eduroam SSID, a home realm -> the cloud;
//  4. eduroam-no-realm: on an eduroam SSID, no realm -> Access-Reject (a roaming identity needs
//     one, RFC 7542 §2.1);
//  5. eduroam-visitor: on an eduroam SSID, any other realm -> the national servers, with
//     Operator-Name and a CUI request, F-Ticks logged.
//
// Requests on other SSIDs take the operator's routes or the default (the cloud).

func (c *Config) buildEduroam(v *validator, b *Built, e *EduroamFile) {
	const path = "eduroam"
	if len(e.Realms) == 0 {
		v.errorf(path+".realms", "list the institution's realms (e.g. myuniversity.edu)")
	}
	for i, r := range e.Realms {
		if strings.ContainsAny(r, "@\\ ") || !strings.Contains(r, ".") {
			v.errorf(fmt.Sprintf("%s.realms[%d]", path, i), "%q is not a realm (RFC 7542 §2.2: a domain name)", r)
		}
	}
	if e.OperatorName == "" {
		v.errorf(path+".operator_name", "required: \"1\" followed by the institution's domain, e.g. 1myuniversity.edu")
	} else if err := proxy.ValidateOperatorName(e.OperatorName); err != nil {
		v.errorf(path+".operator_name", "%v", err)
	}
	if len(e.NationalServers) == 0 {
		v.errorf(path+".national_servers", "at least one national RADIUS server is required")
	}
	if e.VisitedCountry != "" && (len(e.VisitedCountry) != 2 || strings.ToUpper(e.VisitedCountry) != e.VisitedCountry) {
		v.errorf(path+".visited_country", "%q is not an ISO 3166 alpha-2 code (e.g. NL)", e.VisitedCountry)
	}
	pf := PoolFile{Name: EduroamPool, Mode: e.Mode, Servers: e.NationalServers}
	for i := range pf.Servers {
		if pf.Servers[i].Transport != "" && pf.Servers[i].Transport != "udp" {
			v.errorf(fmt.Sprintf("%s.national_servers[%d].transport", path, i), "national servers speak RADIUS/UDP")
		}
	}
	po := c.buildNamedPool(v, b, path, path+".national_servers", &pf)
	b.Routes.Pools = append(b.Routes.Pools, proxy.NamedPool{Name: EduroamPool, Options: po})
	seen := map[netip.Prefix]string{}
	for _, cl := range b.Clients {
		seen[cl.Prefix] = cl.Name
	}
	for i, u := range po.Upstreams {
		ip, err := netip.ParseAddr(u.Host)
		if err != nil {
			continue // reported by buildNamedPool
		}
		pfx := netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		name := "eduroam-" + u.Name
		if other, dup := seen[pfx]; dup {
			v.errorf(fmt.Sprintf("%s.national_servers[%d].address", path, i),
				"%s is also client %q: remove that client, the eduroam preset adds %q", pfx, other, name)
			continue
		}
		seen[pfx] = name
		b.Clients = append(b.Clients, proxy.Client{Name: name, Prefix: pfx, Secret: u.Secret, Vendor: "generic",
			Site: e.Site, RequireMessageAuthenticator: true, LimitProxyState: false})
	}
	if e.FTicksKeyFile != "" {
		key, err := os.ReadFile(c.abs(e.FTicksKeyFile))
		if err != nil {
			v.errorf(path+".f_ticks_key_file", "%v", err)
		} else if len(strings.TrimSpace(string(key))) < 16 {
			v.errorf(path+".f_ticks_key_file", "the key must be at least 16 characters")
		} else {
			b.Routes.FTicks.Key = []byte(strings.TrimSpace(string(key)))
		}
	}
	b.Routes.FTicks.VisCountry = e.VisitedCountry
	b.Routes.FTicks.VisInst = e.OperatorName
	if e.FTicksSyslog != "" || e.FTicksFacility != "" {
		b.FTicksSyslog = buildFTicksSyslog(v, path, e)
	}
}

// FTicksSyslog is where F-Ticks lines are sent as syslog messages: radsecproxy's
// FTicksSyslogFacility, over UDP to a syslog daemon that forwards them to the federation.
type FTicksSyslog struct {
	Addr     netip.AddrPort
	Facility int // RFC 5424 §6.2.1 facility code: local0..local7 are 16..23
}

// syslogFacilities are the facilities f_ticks_facility takes (RFC 5424 §6.2.1).
var syslogFacilities = map[string]int{"user": 1, "daemon": 3, "auth": 4, "local0": 16, "local1": 17, "local2": 18,
	"local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}

func buildFTicksSyslog(v *validator, path string, e *EduroamFile) *FTicksSyslog {
	out := &FTicksSyslog{Facility: syslogFacilities["local1"]}
	if e.FTicksFacility != "" {
		f, ok := syslogFacilities[strings.ToLower(e.FTicksFacility)]
		if !ok {
			v.errorf(path+".f_ticks_facility", "%q is not one of user, daemon, auth, local0 … local7", e.FTicksFacility)
		}
		out.Facility = f
	}
	if e.FTicksSyslog == "" {
		v.errorf(path+".f_ticks_syslog", "required with f_ticks_facility: the syslog receiver, e.g. 127.0.0.1:514")
		return out
	}
	ap, err := netip.ParseAddrPort(e.FTicksSyslog)
	if err != nil || ap.Port() == 0 {
		v.errorf(path+".f_ticks_syslog", "%q is not IP:port (the syslog receiver, e.g. 127.0.0.1:514)", e.FTicksSyslog)
	}
	out.Addr = ap
	return out
}

func (c *Config) eduroamRoutes(b *Built, e *EduroamFile) []proxy.Route {
	var home []proxy.RealmMatch
	for _, r := range e.Realms {
		home = append(home, proxy.RealmMatch{Kind: proxy.RealmSuffix, Value: r})
	}
	var national []string
	for _, s := range e.NationalServers {
		national = append(national, "eduroam-"+s.Name)
	}
	ssids := e.SSIDs
	if len(ssids) == 0 {
		ssids = []string{"eduroam"}
	}
	fticks := boolOr(e.FTicks, true)
	return []proxy.Route{
		{Name: "eduroam-home-roaming", Match: proxy.RouteMatch{Clients: national, Realms: home}, Target: proxy.TargetPool, Pool: proxy.DefaultPoolName},
		{Name: "eduroam-unknown-realm", Match: proxy.RouteMatch{Clients: national}, Target: proxy.TargetReject, ReplyMessage: "unknown realm"},
		{Name: "eduroam-home", Match: proxy.RouteMatch{SSIDs: ssids, Realms: home}, Target: proxy.TargetPool, Pool: proxy.DefaultPoolName},
		{Name: "eduroam-no-realm", Match: proxy.RouteMatch{SSIDs: ssids, Realms: []proxy.RealmMatch{{Kind: proxy.RealmEmpty}}},
			Target: proxy.TargetReject, ReplyMessage: "eduroam needs an identity with a realm (user@realm)"},
		{Name: "eduroam-visitor", Match: proxy.RouteMatch{SSIDs: ssids}, Target: proxy.TargetPool, Pool: EduroamPool,
			OperatorName: e.OperatorName, RequestCUI: boolOr(e.RequestCUI, true), FTicks: fticks},
	}
}
