package survivability

import (
	"errors"
	"log/slog"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// Sources of an Event.
const (
	SourceLocal    = "local"    // survivability answered while the cloud was unreachable
	SourceUpstream = "upstream" // the cloud NAC answered through a RadSec upstream
)

// CacheWriter is what the Learner needs from the cache: non-blocking writes.
type CacheWriter interface {
	Learn(cache.Record)
	Forget(mac, identity string)
}

// LearnerOptions configure a Learner.
type LearnerOptions struct {
	Cache CacheWriter // required
	// Events receives one Event per cloud decision (Access-Accept or Access-Reject). It runs on
	// the upstream connection's goroutine and must not block. nil: none.
	Events func(Event)
	Logger *slog.Logger     // nil discards
	Now    func() time.Time // default time.Now
}

// Validate checks the options.
func (o *LearnerOptions) Validate() error {
	if o.Cache == nil {
		return errors.New("survivability: learner without a cache")
	}
	return nil
}

// Learner remembers upstream decisions in the client cache (docs/cache.md, "Learning"):
//   - an Access-Accept of a MAB or EAP-TLS authentication upserts the client and refreshes its TTL,
//     with the reply's authorization attributes;
//   - an Access-Reject of a MAB or EAP-TLS authentication removes the client, so a client the cloud
//     rejects is not let in during an outage;
//   - other methods (PAP, PEAP, TTLS…) are not learned: they cannot be served locally.
//
// Every decision, learned or not, is also an Event. Learner implements proxy.Observer and never
// blocks the request path.
type Learner struct {
	o LearnerOptions
}

// NewLearner returns a Learner writing to o.Cache.
func NewLearner(o LearnerOptions) (*Learner, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Learner{o: o}, nil
}

// Observe implements proxy.Observer: it classifies each cloud decision once, for the cache and
// for the event.
func (l *Learner) Observe(req *proxy.Request, res proxy.Result) {
	if !Decision(req, res) {
		return // challenges are not decisions; accounting and Status-Server are not NAC events
	}
	c := Classify(req.Packet, req.Client.Secret)
	l.record(req, res, c)
	if l.o.Events == nil {
		return
	}
	ev := Event{Time: l.o.Now(), Allowed: res.Response.Code() == packet.CodeAccessAccept, Method: methodName(c, req.Packet),
		MAC: c.MAC, Identity: c.UserName, NAS: req.Client.Name, Site: req.Client.Site, Source: SourceUpstream,
		Upstream: res.Upstream}
	if ev.Allowed {
		ev.VLAN = ReplyVLAN(res.Response)
	}
	l.o.Events(ev)
}

// methodName is an Event's Method for a classified Access-Request.
func methodName(c Classification, p packet.Packet) string {
	switch c.Method {
	case MethodMAB:
		return "mab"
	case MethodEAPTLS:
		return "eap-tls"
	case MethodEAPOther:
		return "eap"
	}
	if p.Has(packet.AttrCHAPPassword) {
		return "chap"
	}
	return "pap"
}

// Decision reports whether res is the cloud's final decision on an Access-Request (an Accept or a
// Reject): the answers that are learned and that make NAC events.
func Decision(req *proxy.Request, res proxy.Result) bool {
	if req.Packet.Code() != packet.CodeAccessRequest || res.Response == nil {
		return false
	}
	code := res.Response.Code()
	return code == packet.CodeAccessAccept || code == packet.CodeAccessReject
}

// record learns from a decision (see Decision) whose request was classified as c.
func (l *Learner) record(req *proxy.Request, res proxy.Result, c Classification) {
	code := res.Response.Code()
	var method cache.Method
	var identity string
	switch c.Method {
	case MethodMAB:
		method, identity = cache.MethodMAB, c.UserName
	case MethodEAPTLS:
		method = cache.MethodEAPTLS
		// The certificate travels inside the TLS tunnel; the cloud's Accept names the identity it
		// authorized in User-Name. Fall back to the outer identity unless it is anonymous.
		if u, ok := res.Response.Attr(packet.AttrUserName); ok && !Anonymous(string(u)) {
			identity = string(u)
		} else if !Anonymous(c.UserName) {
			identity = c.UserName
		}
	default:
		return
	}
	if c.MAC == "" && identity == "" {
		return
	}
	if code == packet.CodeAccessReject {
		l.o.Cache.Forget(c.MAC, identity)
		l.o.Logger.Debug("cache forget on reject", "mac", c.MAC, "user", identity, "nas", req.Client.Name)
		return
	}
	l.o.Cache.Learn(cache.Record{
		MAC:      c.MAC,
		Identity: identity,
		Method:   method,
		NAS:      req.Client.Name,
		Site:     req.Client.Site,
		Attrs:    ReplyAttrs(res.Response),
	})
	l.o.Logger.Debug("cache learn", "mac", c.MAC, "user", identity, "nas", req.Client.Name)
}
