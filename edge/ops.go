package edge

// Operability: the NAC event bus, the Prometheus exporter and the control socket's NAS table.

import (
	"time"

	"mxedge/edge/control"
	"mxedge/edge/events"
	"mxedge/edge/metrics"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
	"mxedge/survivability/localeap"
)

// Events returns the NAC event bus.
func (e *Edge) Events() *events.Bus { return e.events }

// Metrics returns the Prometheus exporter (nil when disabled).
func (e *Edge) Metrics() *metrics.Server { return e.metrics }

// answerObserver sees every upstream answer: it tells the health state machine, feeds the latency
// histogram, and for the cloud's decisions classifies the request once for both cache learning and
// the NAC event.
type answerObserver struct {
	e       *Edge
	learner *survivability.Learner
}

func (o answerObserver) Observe(req *proxy.Request, res proxy.Result) {
	o.e.health.Answered()
	if res.Response == nil {
		return
	}
	if o.e.metrics != nil {
		o.e.metrics.ObserveUpstreamLatency(res.Upstream, res.RTT)
	}
	if !survivability.Decision(req, res) {
		return // challenges are not decisions; accounting and Status-Server are not NAC events
	}
	c := survivability.Classify(req.Packet, req.Secret())
	o.learner.Record(req, res, c)
	ev := events.Event{Allowed: res.Response.Code() == packet.CodeAccessAccept, Method: methodName(c, req.Packet), MAC: c.MAC,
		Identity: c.UserName, NAS: req.Client.Name, Site: req.Client.Site, Source: events.SourceUpstream, Upstream: res.Upstream}
	if ev.Allowed {
		ev.VLAN = survivability.ReplyVLAN(res.Response)
	}
	o.e.events.Publish(ev)
}

func methodName(c survivability.Classification, p packet.Packet) string {
	switch c.Method {
	case survivability.MethodMAB:
		return "mab"
	case survivability.MethodEAPTLS:
		return "eap-tls"
	case survivability.MethodEAPOther:
		return "eap"
	}
	if p.Has(packet.AttrCHAPPassword) {
		return "chap"
	}
	return "pap"
}

// localEvent publishes a survivability decision (EngineOptions.Events).
func (e *Edge) localEvent(ev survivability.Event) {
	e.events.Publish(events.Event{Time: ev.Time, Allowed: ev.Allowed, Method: ev.Method, MAC: ev.MAC, Identity: ev.Identity,
		NAS: ev.NAS, Site: ev.Site, VLAN: ev.VLAN, Reason: ev.Reason, Source: events.SourceLocal})
}

// localEAPEvent publishes a finished local EAP-TLS conversation (localeap.Options.Events).
func (e *Edge) localEAPEvent(ev localeap.Event) {
	site := ""
	if c := e.clientByName(ev.NAS); c != nil {
		site = c.Site
	}
	e.events.Publish(events.Event{Allowed: ev.Allowed, Method: ev.Method, MAC: ev.MAC, Identity: ev.Identity,
		NAS: ev.NAS, Site: site, VLAN: ev.VLAN, Reason: ev.Reason, Source: events.SourceLocal})
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
	s := metrics.Snapshot{Mode: st.Mode, Received: st.Received, Forwarded: st.Forwarded, Answered: st.Answered,
		Fallback: st.Local, Dropped: st.Dropped, Transitions: map[string]uint64{},
		Cache: metrics.Cache{Entries: st.Cache.Entries, Drops: st.Cache.Drops}, SpoolDepth: st.Spool,
		SpoolQuarantined: st.Quarantine}
	for _, m := range []survivability.Mode{survivability.ModeUp, survivability.ModeSuspect, survivability.ModeDown, survivability.ModeRecovering} {
		s.Transitions[m.String()] = e.health.Transitions(m)
	}
	for _, u := range st.Upstreams {
		s.Upstreams = append(s.Upstreams, metrics.Upstream{Name: u.Name, State: u.State.String(), RTT: u.RTT,
			Answered: u.Answered, Failures: u.Failures})
	}
	for _, c := range e.nasClients() {
		s.NAS = append(s.NAS, metrics.NAS{Name: c.Name, Requests: c.Requests, Responses: c.Responses, Duplicates: c.Duplicates,
			BadAuthenticator: c.BadAuthenticator, MissingMA: c.MissingMA, Malformed: c.Malformed})
	}
	if e.spool != nil {
		s.SpoolRefused = e.spool.Stats().FullRefusals
	}
	for _, r := range st.Revocation {
		s.Revocation = append(s.Revocation, metrics.Revocation{Kind: r.Kind, Source: r.URL, OK: r.ConsecutiveFailures == 0, Failures: r.Failures})
	}
	if e.localEAP != nil {
		ls := e.localEAP.Stats()
		s.EAPTLS = metrics.EAPTLS{Conversations: ls.Conversations, Started: ls.Started, Accepted: ls.Accepted, Rejected: ls.Rejected}
	}
	return s
}
