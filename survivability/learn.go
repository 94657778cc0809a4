package survivability

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// Sources of an Event.
const (
	SourceLocal    = "local"    // survivability answered while the cloud was unreachable
	SourceUpstream = "upstream" // the cloud NAC answered through a RadSec upstream
	// SourceExternal: a server of a route's pool that is not the cloud answered (an eduroam
	// national server, a partner's IdP); RouteEvent.
	SourceExternal = "external"
	// SourceRoute: a route answered Access-Reject itself (a reject route, a loop); RouteEvent.
	SourceRoute = "route"
)

// CacheWriter is what the Learner needs from the cache: non-blocking writes, forgets by method.
type CacheWriter interface {
	Learn(cache.Record)
	ForgetMAB(mac string)
	ForgetIdentity(identity string)
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

// Learner remembers upstream decisions in the client cache (docs/cache.md, "Learning"), and only
// what the cloud was authoritative for:
//   - an Access-Accept of a MAB request (Classify: its password proved the MAC) upserts the MAC's
//     MAB record with the reply's authorization attributes;
//   - an Access-Accept of an EAP-TLS authentication upserts an EAP-TLS record under the identity
//     the cloud confirmed, the User-Name of the Accept; without one (or with an anonymous one)
//     nothing is learned, never the outer identity the supplicant chose;
//   - an Access-Reject of a MAB request removes that MAC's MAB record only; an Access-Reject of an
//     EAP-TLS authentication removes the EAP-TLS records of the identity its own User-Name names,
//     and nothing without one; a Reject of anything else (a PAP login with a MAC as User-Name
//     included) removes nothing;
//   - removals are rate-limited to one per NAS port per ForgetEvery, so a station cannot make the
//     cloud's answers erase one record after another;
//   - other methods (PAP, PEAP, TTLS…) are not learned: they cannot be served locally.
//
// Every decision, learned or not, is also an Event. Learner implements proxy.Observer and never
// blocks the request path.
type Learner struct {
	o LearnerOptions

	mu     sync.Mutex
	forgot map[string]time.Time // NAS port -> time of its last removal
}

// Forget rate limit: one removal per NAS port per ForgetEvery; at most maxForgetPorts ports are
// remembered, beyond which removals wait until old ones age out (fail towards keeping records).
const (
	ForgetEvery    = 5 * time.Second
	maxForgetPorts = 4096
)

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
	return &Learner{o: o, forgot: make(map[string]time.Time)}, nil
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
	ev.SetStation(req.Packet)
	ev.Type = AccessType(ev.Allowed)
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
	reject := res.Response.Code() == packet.CodeAccessReject
	var method cache.Method
	var identity string
	switch c.Method {
	case MethodMAB:
		method, identity = cache.MethodMAB, c.UserName
	case MethodEAPTLS:
		// The certificate travels inside the TLS tunnel; only the cloud's answer can name the
		// identity it authorized (or rejected), in User-Name (RFC 2865 §5.1; Mist: "Include
		// User-Name"). The outer identity is the supplicant's choice and proves nothing.
		method = cache.MethodEAPTLS
		if u, ok := res.Response.Attr(packet.AttrUserName); ok && !Anonymous(string(u)) {
			identity = string(u)
		}
		if identity == "" {
			l.o.Logger.Debug("eap-tls decision without user-name not learned", "mac", c.MAC, "nas", req.Client.Name)
			return
		}
	default:
		return
	}
	if reject {
		if method == cache.MethodMAB && c.MAC == "" {
			return
		}
		if !l.forgetDue(req.Client.Name, c) {
			l.o.Logger.Debug("cache forget rate-limited", "mac", c.MAC, "user", identity, "nas", req.Client.Name)
			return
		}
		if method == cache.MethodMAB {
			l.o.Cache.ForgetMAB(c.MAC)
		} else {
			l.o.Cache.ForgetIdentity(identity)
		}
		l.o.Logger.Debug("cache forget on reject", "method", method.String(), "mac", c.MAC, "user", identity, "nas", req.Client.Name)
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
	if l.o.Logger.Enabled(context.Background(), slog.LevelDebug) {
		// Guarded: the arguments alone cost allocations on every decision.
		l.o.Logger.Debug("cache learn", "method", method.String(), "mac", c.MAC, "user", identity, "nas", req.Client.Name)
	}
}

// forgetDue reports whether a removal for a request from port c.NASPort of NAS nas may happen now,
// and if so counts it. Without a NAS port the Calling-Station-Id stands for the port.
func (l *Learner) forgetDue(nas string, c Classification) bool {
	port := c.NASPort
	if port == "" {
		port = "mac:" + c.MAC
	}
	key := nas + "\x00" + port
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.forgot[key]; ok && now.Sub(last) < ForgetEvery {
		return false
	}
	if len(l.forgot) >= maxForgetPorts {
		for k, t := range l.forgot {
			if now.Sub(t) >= ForgetEvery {
				delete(l.forgot, k)
			}
		}
		if len(l.forgot) >= maxForgetPorts {
			return false
		}
	}
	l.forgot[key] = now
	return true
}
