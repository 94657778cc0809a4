package survivability

import (
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// RouteEvent is the one NAC event of an access decision a route brought about that is not the
// cloud's (proxy.RouteObserver): an Access-Accept or -Reject from a server of another pool
// (source SourceExternal: for eduroam visitors "a NAC Client Access Allowed or Denied event …
// without any other NAC events", because an external RADIUS server authenticated them), or a
// route's own Access-Reject (SourceRoute, reason route-reject or loop). Nothing of it is learned:
// the cache holds only what the cloud granted (Learner), so a visitor's Accept is never replayed
// as a local grant.
func RouteEvent(now time.Time, req *proxy.Request, resp packet.Packet, source, upstream, reason string, via proxy.RouteVia) Event {
	c := Classify(req.Packet, req.Client.Secret)
	ev := Event{Time: now, Allowed: resp != nil && resp.Code() == packet.CodeAccessAccept, Method: methodName(c, req.Packet),
		MAC: c.MAC, Identity: c.UserName, NAS: req.Client.Name, Site: req.Client.Site, Source: source, Upstream: upstream,
		Reason: reason, Route: via.Route, Pool: via.Pool, Realm: via.Realm}
	if ev.Allowed {
		ev.VLAN = ReplyVLAN(resp)
	}
	ev.SetStation(req.Packet)
	ev.Type = AccessType(ev.Allowed)
	return ev
}
