package edge

// Operability: the NAC event bus, the Prometheus exporter and the control socket's NAS table.

import (
	"context"
	"log/slog"
	"time"

	"mxedge/edge/control"
	"mxedge/edge/events"
	"mxedge/edge/identity"
	"mxedge/edge/metrics"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// Events returns the NAC event bus.
func (e *Edge) Events() *events.Bus { return e.events }

// Metrics returns the Prometheus exporter (nil when disabled).
func (e *Edge) Metrics() *metrics.Server { return e.metrics }

// answerObserver sees every upstream answer: it tells the health state machine that the cloud
// answers, feeds the round-trip histogram, and hands the answer to survivability's Learner, which
// learns the cloud's decisions into the cache and publishes them as NAC events.
type answerObserver struct{ e *Edge }

func (o answerObserver) Observe(req *proxy.Request, res proxy.Result) {
	o.e.health.Answered()
	if res.Response == nil {
		return
	}
	if o.e.metrics != nil {
		o.e.metrics.ObserveUpstreamRoundTrip(res.Upstream, res.RTT)
	}
	if o.e.log.Enabled(context.Background(), slog.LevelDebug) {
		o.e.log.Debug("upstream reply", "nas", req.Client.Name, "upstream", res.Upstream, "code", res.Response.Code(),
			"id", req.Packet.ID(), "attrs", packet.Redacted{Packet: res.Response})
	}
	o.e.learner.Observe(req, res)
	o.e.tracker.observe(req, res.Response, true)
	o.e.identity.observe(req, res.Response, identity.AuthorizerCloud)
}

// publish receives every decision — the cloud's (Learner), local (Engine) or local EAP-TLS
// (localeap) — on the goroutine that makes it, before the answer leaves. It counts the decision
// there, exactly, and then puts it on the event bus, which may drop it for a slow subscriber. The
// two event types have the same fields, so this is a conversion, not a copy that could drift.
func (e *Edge) publish(ev survivability.Event) {
	e.decisions.Count(ev)
	e.tracker.decided(ev)
	e.events.Publish(events.Event(ev))
	e.recordDecision(ev)
}

// nasClients lists the NAS clients (UDP, then RadSec peers) with their counters.
func (e *Edge) nasClients() []control.NASClient {
	var out []control.NASClient
	add := func(name, addr, vendor, site string, st *proxy.NASStats) {
		c := control.NASClient{Name: name, Address: addr, Vendor: vendor, Site: site}
		if st != nil {
			c.Requests, c.Responses, c.Duplicates = st.Requests.Load(), st.Responses.Load(), st.Duplicates.Load()
			c.BadAuthenticator, c.MissingMA, c.Malformed = st.BadAuthenticator.Load(), st.MissingMA.Load(), st.Malformed.Load()
			if ns := st.LastSeen.Load(); ns > 0 {
				c.LastSeen = time.Unix(0, ns).UTC()
			}
		}
		out = append(out, c)
	}
	for _, c := range e.server.Clients().All() {
		add(c.Name, c.Prefix.String(), c.Vendor, c.Site, c.Stats())
	}
	e.mu.Lock()
	b := e.cfg.Built()
	e.mu.Unlock()
	if b.Listener != nil {
		for _, p := range b.Listener.Peers {
			add("radsec:"+p.Name, p.Prefix.String(), p.Vendor, p.Site, e.server.NASStats("radsec:"+p.Name))
		}
	}
	return out
}

// certificates are the certificates whose expiry is exported.
func (e *Edge) certificates() []metrics.Certificate {
	var out []metrics.Certificate
	for _, c := range e.CertExpiries(time.Now()) {
		out = append(out, metrics.Certificate{Name: c.Subject + " (" + c.File + ")", NotAfter: c.NotAfter})
	}
	return out
}

// metricsSnapshot reads the request path's counters at scrape time.
func (e *Edge) metricsSnapshot() metrics.Snapshot {
	st := e.Status()
	ps := e.server.Stats()
	s := metrics.Snapshot{Mode: st.Mode, Dropped: map[string]uint64{}, Transitions: map[string]uint64{},
		Requests: metrics.Requests{Received: st.Received, Forwarded: st.Forwarded, UpstreamAnswered: st.Answered,
			Local: st.Local, NoUpstream: ps.NoUpstream.Load(), Retried: ps.Retried.Load(), StatusServer: ps.StatusServer.Load(),
			DuplicateEvicted: ps.DuplicateEvicted.Load()},
		AnswerTime: map[string]metrics.Histogram{
			"access":     histogram(&ps.AccessAnswerTime),
			"accounting": histogram(&ps.AccountingAnswerTime),
		},
		LocalAccounting: e.decisions.Accounting(),
		Cache:           metrics.Cache{Entries: st.Cache.Entries, Drops: st.Cache.Drops},
		Spool:           metrics.Spool{Depth: st.Spool, Quarantined: st.Quarantine},
		EventsDropped:   e.events.Dropped(),
		DecisionLog:     metrics.DecisionLog(e.dlog.Stats()),
		CoA:             e.coaMetrics(),
		Sessions:        e.sessionMetrics(),
		RadSec:          radsecConns(st),
		Identity:        e.identityMetrics(),
		Routes:          e.routeMetrics(),
		FTicks:          metrics.FTicks{Sent: e.fticks.sent.Load(), Dropped: e.fticks.dropped.Load(), Failed: e.fticks.failed.Load()},
	}
	for _, r := range proxy.DropReasons() { // every reason, zeros included, so rate() sees the first drop
		s.Dropped[r.String()] = ps.Dropped[r].Load()
	}
	for _, m := range []survivability.Mode{survivability.ModeUp, survivability.ModeSuspect, survivability.ModeDown, survivability.ModeRecovering} {
		s.Transitions[m.String()] = e.health.Transitions(m)
	}
	for _, d := range e.decisions.Access() {
		s.Decisions = append(s.Decisions, metrics.Decision{Code: d.Code, Method: d.Method, Decider: d.Decider.String(), Count: d.Count})
	}
	for _, d := range e.decisions.Local() {
		code := "reject"
		switch {
		case d.Allowed:
			code = "accept"
		case survivability.Unanswered(d.Reason):
			code = "none" // a deliberate drop (password_logins: no-answer)
		}
		s.LocalDecisions = append(s.LocalDecisions, metrics.LocalDecision{Method: d.Method, Reason: d.Reason, Code: code, Count: d.Count})
	}
	for _, u := range st.Upstreams {
		s.RadSecRefused.Upstream += u.VersionRefused
	}
	for _, r := range st.Realms {
		s.RadSecRefused.Upstream += r.Upstream.VersionRefused
	}
	if e.listener != nil {
		s.RadSecRefused.Listener = e.listener.Stats().VersionRefused.Load()
	}
	for _, u := range st.Upstreams {
		s.Upstreams = append(s.Upstreams, metrics.Upstream{Name: u.Name, State: u.State.String(), RTT: u.RTT,
			Replies: u.Answered, Downs: u.Failures, Connections: u.Connections, Inflight: u.Inflight})
	}
	for _, c := range e.nasClients() {
		s.NAS = append(s.NAS, metrics.NAS{Name: c.Name, Requests: c.Requests, Responses: c.Responses, Duplicates: c.Duplicates,
			BadAuthenticator: c.BadAuthenticator, MissingMA: c.MissingMA, Malformed: c.Malformed, LastSeen: c.LastSeen})
	}
	if e.spool != nil {
		s.Spool.Refused = e.spool.Stats().FullRefusals
	}
	for _, r := range st.Revocation {
		s.Revocation = append(s.Revocation, metrics.Revocation{Kind: r.Kind, Source: r.URL, OK: r.ConsecutiveFailures == 0, Failures: r.Failures})
	}
	if e.localEAP != nil {
		ls := e.localEAP.Stats()
		s.EAPTLS = metrics.EAPTLS{Conversations: ls.Conversations, Started: ls.Started, Challenges: ls.Challenges,
			Accepted: ls.Accepted, Rejected: ls.Rejected, Expired: ls.Expired, Discarded: ls.Discarded, Refused: ls.Overflow}
	}
	s.Cluster = e.clusterMetrics()
	return s
}

// histogram reads an answer-time histogram of the request path.
func histogram(h *proxy.Histogram) metrics.Histogram {
	counts, sum := h.Counts()
	out := metrics.Histogram{Counts: counts, Sum: sum.Seconds(), Bounds: make([]float64, len(proxy.AnswerTimeBounds))}
	for i, b := range proxy.AnswerTimeBounds {
		out.Bounds[i] = b.Seconds()
	}
	return out
}
