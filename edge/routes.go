package edge

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"mxedge/edge/config"
	"mxedge/edge/metrics"
	"mxedge/proxy"
)

// newRoutes builds the route table of b (nil when b has no routes). Its pools put the edge's one
// Proxy-State prefix in what they forward, as the default pool does, so a request that comes back
// through any of them is refused as a loop.
func (e *Edge) newRoutes(b *config.Built) (*proxy.RouteTable, error) {
	sink := e.fticks.sink(b)
	if len(b.Routes.Routes) == 0 {
		return nil, nil
	}
	ro := b.Routes
	ro.Logger, ro.ProxyStatePrefix, ro.FTicks.Sink = e.log, e.psPrefix, sink
	if e.discovery != nil {
		ro.Discoverer = e.discovery
	}
	pools := make([]proxy.NamedPool, len(ro.Pools))
	for i, np := range ro.Pools {
		np.Options.Logger, np.Options.Cork = e.log, e.cork
		np.Options.Resolver = resolverAdapter{e.resolver}
		pools[i] = np
	}
	ro.Pools = pools
	t, err := proxy.NewRouteTable(ro)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return t, nil
}

// newProxyStatePrefix is the edge's Proxy-State prefix for the lifetime of the process.
func newProxyStatePrefix() [4]byte {
	var p [4]byte
	rand.Read(p[:])
	return p
}

// ExplainRoute says which route a sample request takes under cfg (mxedge check --route). sample
// holds attributes by name (User-Name, Called-Station-Id, Calling-Station-Id, Operator-Name) and
// the request's context: client (a NAS client name) or src (the address it comes from), site,
// type (auth or accounting) and method (eap, pap, chap or mab; default pap, or mab when User-Name
// is the Calling-Station-Id MAC).
func ExplainRoute(cfg *config.Config, sample map[string]string) (string, error) {
	b := cfg.Built()
	in := proxy.RouteInput{Type: proxy.TypeAuth, Method: proxy.MethodPAP}
	for k, v := range sample {
		switch strings.ToLower(k) {
		case "user-name":
			in.UserName = v
		case "called-station-id":
			in.SSID = proxy.SSIDOf(v)
		case "calling-station-id":
			in.Calling = v
		case "operator-name":
			in.Operator = v
		case "client":
			in.Client = v
		case "src":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return "", fmt.Errorf("edge: route sample: src: %w", err)
			}
			in.SrcAddr = a.Unmap()
		case "site":
			in.Site = v
		case "type":
			in.Type = proxy.RequestType(strings.ToLower(v))
			if in.Type != proxy.TypeAuth && in.Type != proxy.TypeAccounting {
				return "", fmt.Errorf("edge: route sample: type %q (want auth or accounting)", v)
			}
		case "method":
			in.Method = proxy.Method(strings.ToLower(v))
			switch in.Method {
			case proxy.MethodEAP, proxy.MethodPAP, proxy.MethodCHAP, proxy.MethodMAB:
			default:
				return "", fmt.Errorf("edge: route sample: method %q (want eap, pap, chap or mab)", v)
			}
		default:
			return "", fmt.Errorf("edge: route sample: unknown key %q (want User-Name, Called-Station-Id, Calling-Station-Id, Operator-Name, client, src, site, type, method)", k)
		}
	}
	if _, set := sample["method"]; !set && in.Calling != "" && macOf(in.UserName) != "" && macOf(in.UserName) == macOf(in.Calling) {
		in.Method = proxy.MethodMAB
	}
	in.Realm, in.HasRealm = proxy.SplitRealm(in.UserName)
	// The NAS client: by name, else by the most specific prefix holding src.
	var client *proxy.Client
	for i := range b.Clients {
		c := &b.Clients[i]
		switch {
		case in.Client != "" && c.Name == in.Client:
			client = c
		case in.Client == "" && in.SrcAddr.IsValid() && c.Prefix.Contains(in.SrcAddr) &&
			(client == nil || c.Prefix.Bits() > client.Prefix.Bits()):
			client = c
		}
	}
	if in.Client != "" && client == nil {
		return "", fmt.Errorf("edge: route sample: no NAS client named %q", in.Client)
	}
	if client != nil {
		in.Client = client.Name
		if in.Site == "" {
			in.Site = client.Site
		}
		if !in.SrcAddr.IsValid() {
			in.SrcAddr = client.Prefix.Addr()
		}
	}
	if len(b.Routes.Routes) == 0 {
		return "no routes configured: default pool (the cloud NAC)", nil
	}
	t, err := proxy.NewRouteTable(b.Routes)
	if err != nil {
		return "", fmt.Errorf("edge: %w", err)
	}
	t.MarkLoop(&in)
	return t.Decide(&in).Explain(), nil
}

func macOf(s string) string {
	var d []byte
	for _, c := range []byte(strings.ToLower(s)) {
		switch {
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
			d = append(d, c)
		case c == '-' || c == ':' || c == '.':
		default:
			return ""
		}
	}
	if len(d) != 12 {
		return ""
	}
	return string(d)
}

// checkDiscoverer stands, in Check, for the discovery New builds when discovery is enabled: a
// discover route is valid then.
type checkDiscoverer struct{}

func (checkDiscoverer) Discover(context.Context, string) (*proxy.Pool, error) {
	return nil, proxy.ErrNoDiscovery
}

// RouteStatus is one route's counter for status output.
type RouteStatus struct {
	Name    string `json:"name"`
	Matched uint64 `json:"matched"`
}

// RoutePoolStatus is a routes' pool (not the cloud's) with its upstreams.
type RoutePoolStatus struct {
	Name      string                 `json:"name"`
	Upstreams []proxy.UpstreamStatus `json:"upstreams"`
}

// routeStatus adds the route table's counters and pools to s.
func (e *Edge) routeStatus(s *Status) {
	t := e.router.Routes()
	if t == nil {
		return
	}
	st := t.Stats()
	for i, r := range t.Routes() {
		s.Routes = append(s.Routes, RouteStatus{Name: r.Name, Matched: st.Routes[i].Matched.Load()})
	}
	s.RouteDefault, s.RouteLoops = st.Default.Load(), st.Loops.Load()
	for name, p := range t.Pools() {
		ps := RoutePoolStatus{Name: name}
		for _, u := range p.Upstreams() {
			ps.Upstreams = append(ps.Upstreams, u.Status())
		}
		s.RoutePools = append(s.RoutePools, ps)
	}
	slices.SortFunc(s.RoutePools, func(a, b RoutePoolStatus) int { return strings.Compare(a.Name, b.Name) })
}

// routeMetrics reads the route table's counters for a scrape (nil without routes).
func (e *Edge) routeMetrics() *metrics.Routes {
	t := e.router.Routes()
	if t == nil {
		return nil
	}
	st := t.Stats()
	out := &metrics.Routes{Unmatched: st.Default.Load(), Loops: st.Loops.Load()}
	for i, r := range t.Routes() {
		c := st.Routes[i]
		m := metrics.Route{Name: r.Label(i), Target: r.TargetLabel(), Matched: c.Matched.Load(), NoUpstream: c.NoUpstream.Load(),
			Rejected: c.Rejected.Load(), DiscoveryFailed: c.DiscoveryFailed.Load(), Answers: make(map[string]uint64, len(proxy.AnswerCodes))}
		for k, code := range proxy.AnswerCodes {
			m.Answers[code] = c.Answers[k].Load()
		}
		out.Routes = append(out.Routes, m)
	}
	return out
}
