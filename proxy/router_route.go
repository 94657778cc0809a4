package proxy

import (
	"log/slog"

	"mxedge/proxy/packet"
)

// SetRoutes installs a route table (start-up and reload) and returns the one it replaces, whose
// pools finish their requests in flight. nil sends everything to the router's pool.
func (r *Router) SetRoutes(t *RouteTable) *RouteTable {
	if t != nil {
		for _, p := range t.pools {
			p.stats.Store(r.stats)
		}
		t.adopt(r.routes.Load()) // SetRoutes is called by one owner (start-up, the reload queue)
	}
	return r.routes.Swap(t)
}

// Routes returns the current route table (nil without routes).
func (r *Router) Routes() *RouteTable { return r.routes.Load() }

// RouteVia says which route a request took and where it went, for a RouteObserver.
type RouteVia struct {
	Route string // Route.Label; "" for a loop refused before any route matched
	Pool  string // the target's pool (Route.TargetLabel): "discover" for a discovered realm's servers
	Realm string // the realm of User-Name, "" without one
}

// RouteObserver sees the decisions the routes brought about that are not the cloud's: the
// Observer (cache learning, the cloud's NAC events) never sees them, because the cloud did not
// decide them. It runs on the request path and must not block.
type RouteObserver interface {
	// Answered: a server of a pool other than the router's own (a national roaming server, a
	// partner's IdP, a discovered realm's server) answered req.
	Answered(req *Request, res Result, via RouteVia)
	// Refused: the edge answered req with an Access-Reject of its own, for reason: a reject
	// route ("route-reject") or a loop ("loop"). Accounting refused is not reported: it is
	// left unanswered, which decides nothing.
	Refused(req *Request, via RouteVia, reason string)
}

// route applies the route table to req. It returns false when req takes the router's own path
// (no route matched, or the Fallback takes it); otherwise req is answered or dropped on the
// route's path.
func (r *Router) route(t *RouteTable, req *Request) bool {
	in := t.InputOf(req)
	d := t.Decide(&in)
	if d.Loop {
		t.stats.Loops.Add(1)
		via := RouteVia{Realm: in.Realm}
		if d.Route != nil {
			via.Route, via.Pool = t.labels[d.Index], d.Route.TargetLabel()
		}
		r.refuse(req, "request already crossed this edge (loop)", "loop", via)
		return true
	}
	if d.Route == nil {
		t.stats.Default.Add(1)
		return false
	}
	rc := t.stats.Routes[d.Index]
	rc.Matched.Add(1)
	rt := d.Route
	switch rt.Target {
	case TargetReject:
		if req.Packet.Code() == packet.CodeAccessRequest {
			rc.Rejected.Add(1)
		}
		r.refuse(req, rt.replyMessage(), "route-reject", RouteVia{Route: t.labels[d.Index], Pool: rt.TargetLabel(), Realm: in.Realm})
		return true
	case TargetDiscover:
		go r.discover(t, d.Index, in, req)
		return true
	}
	extra := rt.extra(&in)
	if rt.Pool == "" || rt.Pool == DefaultPoolName {
		if fb := r.opts.Fallback; fb != nil && fb.Takes(req) {
			return false // answered locally, as without the route
		}
		r.forward(req, r.pool.Load(), extra, true, r.answered(t, d.Index, in, req, true))
		return true
	}
	r.forward(req, t.pools[rt.Pool], extra, false, r.answered(t, d.Index, in, req, false))
	return true
}

// answered returns the callback that sees each result of req on route i: it counts the answer
// by code, logs its F-Ticks line, and hands it to the Observer when the cloud (the router's pool)
// answered, else to the RouteObserver.
func (r *Router) answered(t *RouteTable, i int, in RouteInput, req *Request, cloud bool) func(Result) {
	rt, rc := &t.routes[i], t.stats.Routes[i]
	return func(res Result) {
		if res.Err != nil {
			if _, perRequest := perRequestFailure(res.Err); !perRequest {
				rc.NoUpstream.Add(1)
			}
			return
		}
		code := res.Response.Code()
		if k, ok := answerIndex(code); ok {
			rc.Answers[k].Add(1)
		}
		t.fticks(rt, &in, code)
		if cloud {
			if o := r.opts.Observer; o != nil {
				o.Observe(req, res)
			}
			return
		}
		if o := r.opts.Routed; o != nil {
			o.Answered(req, res, RouteVia{Route: t.labels[i], Pool: rt.TargetLabel(), Realm: in.Realm})
		}
	}
}

// discover asks the Discoverer for the realm's pool and forwards there; no answer from it is the
// no-upstream outcome, never a local decision.
func (r *Router) discover(t *RouteTable, i int, in RouteInput, req *Request) {
	rt := &t.routes[i]
	pool, err := t.opts.Discoverer.Discover(r.ctx, in.Realm)
	if err != nil || pool == nil {
		defer r.inflight.Done()
		t.stats.Routes[i].DiscoveryFailed.Add(1)
		r.stats.NoUpstream.Add(1)
		if err == nil {
			err = ErrNoUpstream
		}
		r.outcome(req, err)
		return
	}
	pool.stats.Store(r.stats)
	r.forward(req, pool, rt.extra(&in), false, r.answered(t, i, in, req, false))
}

// refuse answers an Access-Request with Access-Reject and msg as Reply-Message (a reject route,
// a loop); an Accounting-Request is left unacknowledged, as radsecproxy does for a realm without
// servers: nothing would ever take it.
func (r *Router) refuse(req *Request, msg, reason string, via RouteVia) {
	defer r.inflight.Done()
	now := r.opts.Now()
	user, _ := req.Packet.Attr(packet.AttrUserName)
	if req.Packet.Code() != packet.CodeAccessRequest {
		r.limiter.log(r.opts.Logger, slog.LevelWarn, reason, "accounting not acknowledged: refused by route", now,
			"nas", req.Client.Name, "id", req.Packet.ID(), "user", string(user), "reason", reason)
		req.Reply(nil)
		return
	}
	r.limiter.log(r.opts.Logger, slog.LevelWarn, reason, "request rejected by route", now,
		"nas", req.Client.Name, "id", req.Packet.ID(), "user", string(user), "reason", reason)
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessReject)
	if len(msg) > 253 {
		msg = msg[:253]
	}
	b.AddString(packet.AttrReplyMessage, msg)
	resp, err := b.Finish(req.Client.Secret, req.Packet.Authenticator())
	if err != nil {
		req.Reply(nil)
		return
	}
	if o := r.opts.Routed; o != nil {
		o.Refused(req, via, reason)
	}
	req.Reply(resp)
}
