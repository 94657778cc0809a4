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
	}
	return r.routes.Swap(t)
}

// Routes returns the current route table (nil without routes).
func (r *Router) Routes() *RouteTable { return r.routes.Load() }

// route applies the route table to req. It returns false when req takes the router's own path
// (no route matched, or a route to the default pool that adds nothing); otherwise req is answered
// or dropped on the route's path.
func (r *Router) route(t *RouteTable, req *Request) bool {
	in := t.InputOf(req)
	d := t.Decide(&in)
	if d.Loop {
		t.stats.Loops.Add(1)
		r.refuse(req, "request already crossed this edge (loop)", "loop")
		return true
	}
	if d.Route == nil {
		t.stats.Default.Add(1)
		return false
	}
	t.stats.Matched[d.Index].Add(1)
	rt := d.Route
	switch rt.Target {
	case TargetReject:
		t.stats.Rejected.Add(1)
		r.refuse(req, rt.replyMessage(), "route-reject")
		return true
	case TargetDiscover:
		go r.discover(t, rt, in, req)
		return true
	}
	extra := rt.extra(&in)
	if rt.Pool == "" || rt.Pool == DefaultPoolName {
		if extra == nil && !rt.FTicks {
			return false
		}
		if fb := r.opts.Fallback; fb != nil && fb.Takes(req) {
			return false // answered locally, as without the route
		}
		r.forward(req, r.pool.Load(), extra, true, r.fticksFor(t, rt, in))
		return true
	}
	r.forward(req, t.pools[rt.Pool], extra, false, r.fticksFor(t, rt, in))
	return true
}

// fticksFor returns the callback that logs an answer's F-Ticks line, or nil.
func (r *Router) fticksFor(t *RouteTable, rt *Route, in RouteInput) func(packet.Packet) {
	if !rt.FTicks {
		return nil
	}
	return func(resp packet.Packet) { t.fticks(rt, &in, resp.Code()) }
}

// discover asks the Discoverer for the realm's pool and forwards there; no answer from it is the
// no-upstream outcome, never a local decision.
func (r *Router) discover(t *RouteTable, rt *Route, in RouteInput, req *Request) {
	pool, err := t.opts.Discoverer.Discover(r.ctx, in.Realm)
	if err != nil || pool == nil {
		defer r.inflight.Done()
		r.stats.NoUpstream.Add(1)
		if err == nil {
			err = ErrNoUpstream
		}
		r.outcome(req, err)
		return
	}
	pool.stats.Store(r.stats)
	r.forward(req, pool, rt.extra(&in), false, r.fticksFor(t, rt, in))
}

// refuse answers an Access-Request with Access-Reject and msg as Reply-Message (a reject route,
// a loop); an Accounting-Request is left unacknowledged, as radsecproxy does for a realm without
// servers: nothing would ever take it.
func (r *Router) refuse(req *Request, msg, reason string) {
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
	req.Reply(resp)
}
