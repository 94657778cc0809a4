package survivability

import (
	"log/slog"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// CacheWriter is what the Learner needs from the cache: non-blocking writes.
type CacheWriter interface {
	Learn(cache.Record)
	Forget(mac, identity string)
}

// Learner remembers upstream decisions in the client cache (docs/cache.md, "Learning"):
//   - an Access-Accept of a MAB or EAP-TLS authentication upserts the client and refreshes its TTL,
//     with the reply's authorization attributes;
//   - an Access-Reject of a MAB or EAP-TLS authentication removes the client, so a client the cloud
//     rejects is not let in during an outage;
//   - other methods (PAP, PEAP, TTLS…) are not learned: they cannot be served locally.
//
// It implements proxy.Observer and never blocks the request path.
type Learner struct {
	cache  CacheWriter
	logger *slog.Logger
}

// NewLearner returns a Learner writing to c.
func NewLearner(c CacheWriter, logger *slog.Logger) *Learner {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Learner{cache: c, logger: logger}
}

// Observe implements proxy.Observer.
func (l *Learner) Observe(req *proxy.Request, res proxy.Result) {
	if !Decision(req, res) {
		return
	}
	l.Record(req, res, Classify(req.Packet, req.Client.Secret))
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

// Record learns from a decision (see Decision) whose request was already classified, so a caller
// that also needs the classification (NAC events) classifies once.
func (l *Learner) Record(req *proxy.Request, res proxy.Result, c Classification) {
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
		l.cache.Forget(c.MAC, identity)
		l.logger.Debug("cache forget on reject", "mac", c.MAC, "user", identity, "nas", req.Client.Name)
		return
	}
	l.cache.Learn(cache.Record{
		MAC:      c.MAC,
		Identity: identity,
		Method:   method,
		NAS:      req.Client.Name,
		Site:     req.Client.Site,
		Attrs:    ReplyAttrs(res.Response),
	})
	l.logger.Debug("cache learn", "mac", c.MAC, "user", identity, "nas", req.Client.Name)
}
