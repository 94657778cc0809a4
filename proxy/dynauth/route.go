package dynauth

import (
	"net/netip"

	"mxedge/proxy/packet"
)

// How a request found its NAS (Outcome.Route, the decision log's reason).
const (
	RouteOperatorNASID = "operator-nas-identifier"
	RouteNASIP         = "nas-ip-address"
	RouteNASIPv6       = "nas-ipv6-address"
	RouteNASID         = "nas-identifier"
	RouteSession       = "session"
	RouteNone          = "none"
)

// route finds the NAS of a request and the address to send it to. The NAS identification
// attributes are tried first (RFC 5176 §3: they identify the NAS the session lives on), then the
// session table. A request naming a NAS mxedge does not serve is not routable (502); one that names
// only a session mxedge does not know gets 503.
func (r *Relay) route(p packet.Packet) (nas *NAS, to netip.Addr, how string, cause uint32) {
	t := r.tables.Load()
	var nasIP netip.Addr
	if v, ok := p.Attr(packet.AttrNASIPAddress); ok && len(v) == 4 {
		nasIP = netip.AddrFrom4([4]byte(v))
	} else if v, ok := p.Attr(packet.AttrNASIPv6Address); ok && len(v) == 16 {
		nasIP = netip.AddrFrom16([16]byte(v))
	}
	// addrFor picks where to send for a NAS found by name: the NAS-IP(v6)-Address the request
	// carries when it is the NAS's, else the NAS's own address when it is one host.
	addrFor := func(n *NAS) (netip.Addr, bool) {
		if nasIP.IsValid() && n.Prefix.Contains(nasIP) {
			return nasIP, true
		}
		if n.Prefix.IsSingleIP() {
			return n.Prefix.Addr(), true
		}
		return netip.Addr{}, false
	}
	if v, ok := operatorNASID(p); ok {
		n := t.byName[string(v)]
		if n == nil {
			return nil, to, RouteOperatorNASID, CauseRequestNotRoutable
		}
		a, ok := addrFor(n)
		if !ok {
			return n, to, RouteOperatorNASID, CauseRequestNotRoutable
		}
		return n, a, RouteOperatorNASID, 0
	}
	if nasIP.IsValid() {
		how := RouteNASIP
		if nasIP.Is6() {
			how = RouteNASIPv6
		}
		c := t.nases.Lookup(nasIP)
		if c == nil {
			return nil, to, how, CauseRequestNotRoutable
		}
		return t.byName[c.Name], nasIP, how, 0
	}
	if v, ok := p.Attr(packet.AttrNASIdentifier); ok {
		n := t.byName[string(v)]
		if n == nil {
			return nil, to, RouteNASID, CauseRequestNotRoutable
		}
		a, ok := addrFor(n)
		if !ok {
			return n, to, RouteNASID, CauseRequestNotRoutable
		}
		return n, a, RouteNASID, 0
	}
	q := sessionOf(p)
	if q == (SessionQuery{}) {
		return nil, to, RouteNone, CauseRequestNotRoutable
	}
	if r.opts.Sessions == nil {
		return nil, to, RouteSession, CauseSessionNotFound
	}
	ref, ok := r.opts.Sessions.FindSession(q)
	if !ok {
		return nil, to, RouteSession, CauseSessionNotFound
	}
	n := t.byName[ref.NAS]
	if n == nil && ref.NASAddr.IsValid() {
		if c := t.nases.Lookup(ref.NASAddr); c != nil {
			n = t.byName[c.Name]
		}
	}
	if n == nil {
		return nil, to, RouteSession, CauseRequestNotRoutable
	}
	if ref.NASAddr.IsValid() && n.Prefix.Contains(ref.NASAddr.Unmap()) {
		return n, ref.NASAddr.Unmap(), RouteSession, 0
	}
	if a, ok := addrFor(n); ok {
		return n, a, RouteSession, 0
	}
	return n, to, RouteSession, CauseRequestNotRoutable
}

// operatorNASID returns the value of the first Operator-NAS-Identifier (RFC 8559, 241.8).
func operatorNASID(p packet.Packet) ([]byte, bool) {
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return nil, false
		}
		if typ == attrExtended1 && len(v) >= 1 && v[0] == extOperatorNASID {
			return v[1:], true
		}
	}
}

// sessionOf reads the session identification attributes of a request.
func sessionOf(p packet.Packet) SessionQuery {
	var q SessionQuery
	if v, ok := p.Attr(packet.AttrAcctSessionID); ok {
		q.AcctSessionID = string(v)
	}
	if v, ok := p.Attr(packet.AttrCallingStationID); ok {
		q.CallingStationID = string(v)
	}
	if v, ok := p.Attr(packet.AttrUserName); ok {
		q.UserName = string(v)
	}
	if v, ok := p.Attr(attrFramedIPAddress); ok && len(v) == 4 {
		q.FramedIP = netip.AddrFrom4([4]byte(v))
	}
	return q
}
