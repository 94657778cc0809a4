package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// Fallback answers requests the upstreams could not: survivability's local decisions implement it.
// The proxy declares it because the proxy calls it.
type Fallback interface {
	// Takes reports whether req is answered locally without trying the upstreams (the cloud is
	// declared unreachable, or accounting must queue behind a spooled backlog to keep its order).
	Takes(req *Request) bool
	// Serve answers req locally. cause says why the upstreams did not (ErrNoUpstream, a timeout, a
	// bad reply; nil when Takes was true). It returns the response for the NAS, signed with the NAS's secret,
	// or nil to leave the request unanswered (e.g. accounting that could not be stored, so the NAS
	// keeps it).
	Serve(ctx context.Context, req *Request, cause error) (packet.Packet, error)
}

// SlowFallback is implemented by a Fallback some of whose local answers cost more than a cache
// lookup and a signature, such as checking a password against a memory-hard hash; the router runs
// those off the goroutine that reads the NAS's socket.
type SlowFallback interface {
	Slow(req *Request) bool
}

func slow(fb Fallback, req *Request) bool {
	s, ok := fb.(SlowFallback)
	return ok && s.Slow(req)
}

// Observer sees every answer an upstream gave (cache learning, NAC events). It runs on the
// connection's goroutine and must not block.
type Observer interface {
	Observe(req *Request, res Result)
}

// TimeoutObserver is told of each request its upstream left unanswered past its budget while the
// connection stayed up (survivability's Health implements it: the edge becomes suspect).
type TimeoutObserver interface {
	TimedOut()
}

// IsTimeout reports whether a Fallback's cause is a request that ran out of budget waiting for an
// upstream answer (as opposed to no upstream being available at all).
func IsTimeout(err error) bool { return errors.Is(err, radsec.ErrTimeout) }

// NoUpstreamPolicy is the outcome for an Access-Request that neither an upstream nor a Fallback answered.
type NoUpstreamPolicy string

const (
	// NoUpstreamReject answers Access-Reject, so the user is told at once rather than after the NAS's
	// retransmissions run out (what FreeRADIUS does when no home server is alive).
	NoUpstreamReject NoUpstreamPolicy = "reject"
	// NoUpstreamDrop sends nothing so the NAS fails over to its next RADIUS server after its own
	// timeout; for sites whose switches list a second server.
	NoUpstreamDrop NoUpstreamPolicy = "drop"
)

// RouterOptions configure where requests go.
type RouterOptions struct {
	Fallback Fallback // nil: the NoUpstream policy decides
	Observer Observer // nil: none; sees the cloud's answers only
	// Routed sees what routes decided that is not the cloud's: the answers of other pools and
	// the routes' own Access-Rejects (router_route.go). nil: none.
	Routed     RouteObserver
	Timeouts   TimeoutObserver // nil: none
	NoUpstream NoUpstreamPolicy
	Logger     *slog.Logger
	Now        func() time.Time
}

// Validate checks the options before anything is served.
func (o *RouterOptions) Validate() error {
	switch o.NoUpstream {
	case "", NoUpstreamReject, NoUpstreamDrop:
		return nil
	}
	return fmt.Errorf("proxy: unknown no-upstream policy %q (want reject or drop)", o.NoUpstream)
}

// Router is the front door's Handler: it sends each request to the upstream pool and, when no
// upstream answers, to the Fallback. Accounting-Requests nobody stored are never acknowledged, so
// the NAS keeps them.
type Router struct {
	opts     RouterOptions
	pool     atomic.Pointer[Pool]
	stats    *Stats
	inflight sync.WaitGroup
	limiter  *logLimiter
	ctx      context.Context
	routes   atomic.Pointer[RouteTable] // nil: everything goes to pool (route.go)
}

// NewRouter creates a router over pool; stats are the front door's counters.
func NewRouter(o RouterOptions, pool *Pool, stats *Stats) *Router {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NoUpstream == "" {
		o.NoUpstream = NoUpstreamReject
	}
	if stats == nil {
		stats = new(Stats)
	}
	r := &Router{opts: o, stats: stats, limiter: newLogLimiter(10 * time.Second), ctx: context.Background()}
	if pool != nil {
		pool.stats.Store(stats)
	}
	r.pool.Store(pool)
	return r
}

// SetPool swaps in a new pool (reload) and returns the old one, which finishes its requests in
// flight. From then on only the new pool's upstreams count for health: one renamed or removed by
// the reload cannot stay "up" forever.
func (r *Router) SetPool(p *Pool) *Pool {
	p.stats.Store(r.stats)
	old := r.pool.Swap(p)
	if old != nil && old != p {
		old.retired.Store(true)
	}
	p.announce()
	return old
}

// Pool returns the current pool.
func (r *Router) Pool() *Pool { return r.pool.Load() }

// Wait blocks until every request handed to the router has been answered, or ctx ends.
func (r *Router) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeRADIUS implements Handler.
func (r *Router) ServeRADIUS(req *Request) {
	r.inflight.Add(1)
	if t := r.routes.Load(); t != nil && r.route(t, req) {
		return
	}
	if fb := r.opts.Fallback; fb != nil && fb.Takes(req) {
		r.stats.Fallback.Add(1)
		// Local MAB and PAP decisions are answered on the reader goroutine, which saves a goroutine
		// hand-off per request (and, at a low packet rate, a thread woken to run it): they are a
		// cache lookup and a signature, and so are the EAP steps without handshake work
		// (cheapEAP). An EAP-TLS step that carries TLS data can be a millisecond of handshake CPU,
		// accounting waits for an fsync, and a Fallback may say a request costs more (a password
		// hash check): those run on their own goroutines so that the socket's one reader keeps
		// reading and the work uses every core.
		if req.Packet.Code() == packet.CodeAccessRequest && cheapEAP(req.Packet) && !slow(fb, req) {
			r.local(req, nil)
			return
		}
		go r.local(req, nil)
		return
	}
	r.forward(req, r.pool.Load(), nil, true, nil)
}

// EAP header offsets (RFC 3748 §4) and the flags octet of the TLS-based methods (RFC 5216 §3.1).
const (
	eapOffLength = 2
	eapOffType   = 4
	eapOffFlags  = 5
	eapTypeIdent = 1    // RFC 3748 §5.1
	eapFlagMore  = 0x40 // RFC 5216 §3.1: more fragments follow
)

// cheapEAP reports whether a local EAP server answers p without handshake work, so the reader
// may answer it: p has no EAP-Message at all; or its EAP packet is a Response/Identity (RFC 3748
// §5.1: answered with the method's Start); or it carries no method data beyond one octet (an
// EAP-TLS ACK of a server fragment or of the server's last flight, RFC 5216 §2.1.3, answered with
// the next fragment or the EAP-Success, or a Nak); or it is a fragment with more to follow (RFC
// 5216 §3.1, M flag: buffered and acknowledged). A packet too short to hold an EAP header is
// rejected as malformed, which is cheap too. Only the first EAP-Message attribute is read (RFC 3579
// §3.1: it starts the EAP packet); the local server checks the whole packet itself.
func cheapEAP(p packet.Packet) bool {
	v, ok := p.Attr(packet.AttrEAPMessage)
	if !ok || len(v) <= eapOffType {
		return true
	}
	if v[eapOffType] == eapTypeIdent || int(v[eapOffLength])<<8|int(v[eapOffLength+1]) <= eapOffFlags+1 {
		return true
	}
	return len(v) > eapOffFlags && v[eapOffFlags]&eapFlagMore != 0
}

// forward sends req to pool with extra attributes added. When no upstream answers, local says
// whether the Fallback may answer (only the router's own pool: survivability grants no more than
// the cloud would, and the cloud decides nothing for another pool's requests); otherwise the
// no-upstream outcome applies. answered, if set, sees each result (errors included) before the
// NAS gets an answer, in place of the Observer (a route's counters and observers, router_route.go).
func (r *Router) forward(req *Request, pool *Pool, extra []byte, local bool, answered func(Result)) {
	r.stats.Forwarded.Add(1)
	pool.ForwardAdding(req, extra, func(res Result) {
		if answered != nil {
			answered(res)
		}
		if res.Err != nil {
			if reason, ok := perRequestFailure(res.Err); ok {
				r.drop(req, reason, res.Err)
				return
			}
			r.stats.NoUpstream.Add(1)
			if local {
				go r.local(req, res.Err)
				return
			}
			defer r.inflight.Done()
			r.outcome(req, res.Err)
			return
		}
		r.stats.UpstreamAnswered.Add(1)
		o := r.opts.Observer
		if o == nil || answered != nil {
			req.Reply(res.Response)
			r.inflight.Done()
			return
		}
		// The answer first, then what only observes it (learning, the decision's event and
		// counters, the session copy): put off to the end of the burst, after the burst's answers
		// have left, so it holds none of them back (docs/decisions.md). The request counts as in
		// flight until its observation has run, so Wait covers it.
		req.Reply(res.Response)
		req.later = observation{o: o, req: req, res: res, done: &r.inflight}
		if !pool.opts.Cork.After(&req.later) {
			req.later.Run()
		}
	})
}

// observation is an Observer's call on an answered request, put off by sockio.Cork.After; it
// lives in the Request so that putting it off allocates nothing.
type observation struct {
	o    Observer
	req  *Request
	res  Result
	done *sync.WaitGroup
}

// Run implements sockio.Task.
func (ob *observation) Run() {
	o, req, res, done := ob.o, ob.req, ob.res, ob.done
	*ob = observation{}
	o.Observe(req, res)
	done.Done()
}

// perRequestFailure says whether err failed this request alone while its upstream connection stayed
// up: it could not be encoded, the only replies failed verification, or no reply came in its budget.
// Those are not the cloud being unreachable, so no local fail-open decision is made for them (see
// docs/decisions.md): the request is dropped and counted, the NAS retransmits, and the
// retransmission is processed afresh.
func perRequestFailure(err error) (DropReason, bool) {
	switch {
	case errors.Is(err, ErrBadReply):
		return DropBadReply, true
	case errors.Is(err, radsec.ErrBuild):
		return DropMalformed, true
	case errors.Is(err, radsec.ErrTimeout):
		return DropUpstreamTimeout, true
	}
	return 0, false
}

// drop ends a request without an answer; Request.Drop counts the reason and logs it.
func (r *Router) drop(req *Request, reason DropReason, err error) {
	defer r.inflight.Done()
	if reason == DropUpstreamTimeout && r.opts.Timeouts != nil {
		r.opts.Timeouts.TimedOut()
	}
	req.Drop(reason, err)
}

// local answers a request without an upstream: the Fallback if there is one, else the documented
// default outcome.
func (r *Router) local(req *Request, cause error) {
	defer r.inflight.Done()
	code := req.Packet.Code()
	if fb := r.opts.Fallback; fb != nil {
		if cause != nil {
			r.stats.Fallback.Add(1)
		}
		resp, err := fb.Serve(r.ctx, req, cause)
		if err != nil {
			r.opts.Logger.Error("local decision failed", "nas", req.Client.Name, "code", code, "id", req.Packet.ID(), "err", err)
		}
		req.Reply(resp)
		return
	}
	r.outcome(req, cause)
}

// outcome answers a request no upstream answered and no Fallback may: accounting stays
// unacknowledged, an Access-Request gets the NoUpstream policy's answer.
func (r *Router) outcome(req *Request, cause error) {
	code := req.Packet.Code()
	now := r.opts.Now()
	if code == packet.CodeAccountingRequest {
		// Acknowledging accounting we could not deliver would lose it: stay silent so the NAS
		// retransmits or fails over.
		r.limiter.log(r.opts.Logger, slog.LevelWarn, "acct", "accounting not acknowledged: no upstream answered", now,
			"nas", req.Client.Name, "id", req.Packet.ID(), "err", cause)
		req.Reply(nil)
		return
	}
	if r.opts.NoUpstream == NoUpstreamDrop {
		r.limiter.log(r.opts.Logger, slog.LevelWarn, "drop", "request not answered: no upstream answered", now,
			"nas", req.Client.Name, "id", req.Packet.ID(), "err", cause, "policy", string(NoUpstreamDrop))
		req.Reply(nil)
		return
	}
	r.limiter.log(r.opts.Logger, slog.LevelWarn, "reject", "request rejected: no upstream answered", now,
		"nas", req.Client.Name, "id", req.Packet.ID(), "err", cause, "policy", string(NoUpstreamReject))
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessReject)
	resp, err := b.Finish(req.Client.Secret, req.Packet.Authenticator())
	if err != nil {
		req.Reply(nil)
		return
	}
	req.Reply(resp)
}
