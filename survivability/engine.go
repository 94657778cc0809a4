package survivability

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability/spool"
)

// ReplyUnsupported is the Reply-Message of a request whose method cannot be served locally
// (docs/survivability.md: password methods are checked by the cloud; the edge keeps no password).
const ReplyUnsupported = "The cloud NAC is unreachable: only certificate (EAP-TLS) and MAB authentication work until it returns."

// EAPHandler answers EAP conversations locally (survivability/localeap implements EAP-TLS). Serve
// returns the full signed answer, or nil to drop the request silently (RFC 3579 §3.2).
type EAPHandler interface {
	Serve(req *proxy.Request) packet.Packet
}

// AccountingSpool is the accounting path: every Accounting-Request goes through it so that each
// session's records reach the cloud in receipt order whether delivered directly or spooled (the
// Accounting type implements it). Account returns the cloud's response when it delivered req,
// spooled when it stored req durably instead (the engine then acknowledges it), and an error when
// it did neither (no answer, so the NAS keeps the record).
// Admit is called first, on the goroutine that read req, to fix its place in receipt order.
type AccountingSpool interface {
	Admit(req *proxy.Request)
	Account(req *proxy.Request) (resp packet.Packet, spooled bool, err error)
}

// EngineOptions configure local decisions.
type EngineOptions struct {
	Health *Health
	// Authorizer is the local authorization decision, shared with the local EAP-TLS server.
	Authorizer *Authorizer
	// Sites is the per-site policy (site.go): whether a site's NASes get local decisions and what
	// their password logins get; the Authorizer reads the same table for the default VLANs,
	// failmode and caching period. nil: one enabled site rejecting password logins.
	Sites      *Sites
	EAP        EAPHandler      // nil: EAP is rejected with a reason
	Accounting AccountingSpool // nil: accounting is not acknowledged while the cloud is unreachable
	Events     func(Event)
	Logger     *slog.Logger
	Now        func() time.Time
}

// Engine is the local decision engine: the proxy's Fallback. It answers while the cloud NAC is down
// (Active) and for every request the upstreams failed to answer.
type Engine struct {
	opts   EngineOptions
	logins loginLimiter // failed local password logins (password.go)
}

// NewEngine returns an engine; Health and Authorizer are required.
func NewEngine(o EngineOptions) (*Engine, error) {
	if o.Health == nil {
		return nil, errors.New("survivability: engine without health state")
	}
	if o.Authorizer == nil {
		return nil, errors.New("survivability: engine without an authorizer")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Engine{opts: o}, nil
}

// Takes implements proxy.Fallback: requests skip the upstreams while the cloud is down or the edge
// is recovering. With a spool, accounting always goes through it: it forwards directly itself when
// that keeps the session's order, and it alone can tell. The router calls Takes on the goroutine
// that read the request, once, and Serves every request it took: that is where an
// Accounting-Request gets its place in its session's receipt order.
func (e *Engine) Takes(req *proxy.Request) bool {
	if e.opts.Accounting != nil && req.Packet.Code() == packet.CodeAccountingRequest {
		e.opts.Accounting.Admit(req)
		return true
	}
	return e.opts.Health.Local()
}

// Slow implements proxy.SlowFallback: a password login at a site whose policy checks local
// accounts costs an argon2id or bcrypt verification (about 0.1 s), which must not hold up the
// socket's reader; every other local Access-Request decision is a cache lookup and a signature.
func (e *Engine) Slow(req *proxy.Request) bool {
	site := e.site(req)
	if !site.Enabled || site.Password != PasswordLocal || req.Packet.Code() != packet.CodeAccessRequest {
		return false
	}
	switch Classify(req.Packet, req.Client.Secret).Method {
	case MethodMAB, MethodEAPTLS, MethodEAPOther:
		return false
	}
	return true
}

// Serve implements proxy.Fallback.
func (e *Engine) Serve(_ context.Context, req *proxy.Request, cause error) (packet.Packet, error) {
	if cause != nil && proxy.IsTimeout(cause) {
		e.opts.Health.TimedOut()
	}
	switch req.Packet.Code() {
	case packet.CodeAccountingRequest:
		return e.accounting(req)
	case packet.CodeAccessRequest:
		return e.access(req)
	}
	return nil, nil
}

func (e *Engine) event(req *proxy.Request, ev Event) {
	ev.Time, ev.Source = e.opts.Now(), SourceLocal
	ev.NAS, ev.Site = req.Client.Name, req.Client.Site
	if ev.Method != "accounting" {
		ev.Type = AccessType(ev.Allowed)
		ev.SetStation(req.Packet)
	}
	// At info level the decision log (edge/decisionlog) writes it, rate-limited, off this path.
	if e.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		e.opts.Logger.Debug("local decision", "allowed", ev.Allowed, "method", ev.Method, "mac", ev.MAC, "user", ev.Identity,
			"nas", ev.NAS, "vlan", ev.VLAN, "reason", ev.Reason)
	}
	if e.opts.Events != nil {
		e.opts.Events(ev)
	}
}

func (e *Engine) accounting(req *proxy.Request) (packet.Packet, error) {
	if e.opts.Accounting == nil {
		e.event(req, Event{Method: "accounting", Reason: "no-spool"})
		return nil, nil
	}
	resp, spooled, err := e.opts.Accounting.Account(req)
	if err != nil {
		// Not stored: not acknowledged, so the NAS keeps the record and retransmits.
		reason := "spool-error"
		if errors.Is(err, spool.ErrFull) {
			reason = "spool-full"
		}
		e.event(req, Event{Method: "accounting", Reason: reason})
		return nil, err
	}
	if !spooled {
		return resp, nil // the cloud's own Accounting-Response: not a local decision
	}
	e.event(req, Event{Allowed: true, Method: "accounting", Reason: "spooled"})
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccountingResponse)
	return b.Finish(req.Client.Secret, req.Packet.Authenticator())
}

func (e *Engine) access(req *proxy.Request) (packet.Packet, error) {
	c := Classify(req.Packet, req.Client.Secret)
	site := e.site(req)
	if !site.Enabled {
		return e.siteDisabled(req, c)
	}
	switch c.Method {
	case MethodMAB:
		return e.mab(req, c)
	case MethodEAPTLS, MethodEAPOther:
		if e.opts.EAP == nil {
			e.event(req, Event{Method: "eap", MAC: c.MAC, Identity: c.UserName, Reason: "local-eap-unavailable"})
			return e.reject(req, ReplyUnsupported)
		}
		return e.opts.EAP.Serve(req), nil
	}
	return e.password(req, c, site)
}

// mab answers a request whose password proved its MAC (Classify): the Access-Accept carries the
// authorization attributes only, never a User-Name.
func (e *Engine) mab(req *proxy.Request, c Classification) (packet.Packet, error) {
	v := e.opts.Authorizer.Authorize(Proof{Method: cache.MethodMAB, MAC: c.MAC}, req.Client.Vendor, req.Client.Site)
	e.event(req, Event{Allowed: v.Allowed, Method: "mab", MAC: c.MAC, Identity: c.UserName, VLAN: v.VLAN, Reason: v.Reason})
	if !v.Allowed {
		return e.reject(req, "")
	}
	// Sized once: appending to a nil buffer grew it three times per answer.
	b := packet.NewResponse(make([]byte, 0, ResponseLen(v.Attrs)), req.Packet, packet.CodeAccessAccept)
	AppendAttrs(&b, v.Attrs)
	return finish(req, &b)
}

func (e *Engine) reject(req *proxy.Request, msg string) (packet.Packet, error) {
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessReject)
	if msg != "" {
		b.AddString(packet.AttrReplyMessage, msg)
	}
	return finish(req, &b)
}

// finish signs the answer to req with its NAS's key schedule (proxy.Client.MAKey), which the
// server already keeps to check requests: two MD5 blocks fewer per Message-Authenticator.
func finish(req *proxy.Request, b *packet.Builder) (packet.Packet, error) {
	return b.FinishKey(req.Client.Secret, req.Client.MAKey(), req.Packet.Authenticator())
}
