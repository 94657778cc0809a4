package edge

// The NAC events of what routes decide that is not the cloud's (docs/routing.md, "NAC events").

import (
	"time"

	"mxedge/proxy"
	"mxedge/survivability"
)

// routeObserver publishes one event per access decision of a pool other than the cloud's and per
// Access-Reject a route makes itself. It is all such an answer does at the edge: no cache
// learning (the cache holds only what the cloud granted), no health signal (the cloud did not
// answer), no session or identity record tagged as the cloud's.
type routeObserver struct{ e *Edge }

func (o routeObserver) Answered(req *proxy.Request, res proxy.Result, via proxy.RouteVia) {
	if !survivability.Decision(req, res) {
		return // a Challenge is half a conversation; accounting decides nothing
	}
	o.e.publish(survivability.RouteEvent(time.Now(), req, res.Response, survivability.SourceExternal, res.Upstream, "", via))
}

func (o routeObserver) Refused(req *proxy.Request, via proxy.RouteVia, reason string) {
	o.e.publish(survivability.RouteEvent(time.Now(), req, nil, survivability.SourceRoute, "", reason, via))
}
