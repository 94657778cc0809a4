package survivability

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// Reasons of local decisions (Event.Reason).
const (
	ReasonCacheHit    = "cache-hit"       // served the authorization cached for the proven identity
	ReasonDefaultVLAN = "default-vlan"    // proven, not cached: the default VLAN of its method
	ReasonFailClosed  = "failmode-closed" // proven, not cached, failmode closed
)

// CacheReader is what the local decision reads from the client cache: one lookup per method, so a
// record is only ever found by the method and identity it was learned for (cache.Store).
type CacheReader interface {
	LookupMAB(mac string) (cache.Record, bool, error)
	LookupEAPTLS(identity, mac string) (cache.Record, bool, error)
}

// Proof is what a request proved about itself, and the only thing a local decision is made on.
type Proof struct {
	// Method is cache.MethodMAB (Classify found the password to be the MAC) or
	// cache.MethodEAPTLS (the local EAP-TLS server verified a client certificate).
	Method cache.Method
	// MAC is the canonical Calling-Station-Id.
	MAC string
	// Identity is the verified certificate identity (EAP-TLS); unused for MAB.
	Identity string
}

// Verdict is a local authorization decision.
type Verdict struct {
	Allowed bool
	// Attrs are the authorization attributes to add to the Access-Accept: replayable
	// (Replayable), never an identity (User-Name) the request did not prove.
	Attrs  []cache.Attr
	VLAN   string // the VLAN among Attrs, for the event
	Reason string // ReasonCacheHit, ReasonDefaultVLAN, ReasonFailClosed
}

// AuthorizerOptions configure the local authorization decision.
type AuthorizerOptions struct {
	Cache CacheReader
	// DefaultMABVLAN and DefaultDot1XVLAN are the VLAN ID or name for MAB and 802.1X clients not in
	// the cache (docs/survivability.md). Empty: accept without a VLAN (the port's own VLAN).
	DefaultMABVLAN   string
	DefaultDot1XVLAN string
	// FailClosed rejects clients not in the cache instead of giving them the default VLAN (the
	// Duo-style "failmode").
	FailClosed bool
	// Sites, when set, is the per-site policy (site.go): the default VLANs and failmode are then
	// those of the NAS's site instead of the three above, and a cached entry is served only within
	// the caching period of the site it was learned at.
	Sites  *Sites
	Now    func() time.Time // the clock of the caching period; default time.Now
	Logger *slog.Logger
}

// Authorizer is the one local authorization decision, for MAB and EAP-TLS alike: a cache entry is
// served only to the method and the proven identity it was learned for. The decision engine uses it
// for MAB and the local EAP-TLS server once a certificate is verified.
type Authorizer struct {
	o AuthorizerOptions
	// defaults memoizes DefaultVLANAttrs per vendor and VLAN, and the VLAN they carry: every
	// default-VLAN answer would otherwise build the same attributes and VLAN string again.
	// Read-only once stored; bounded (defaultsMax).
	defaults sync.Map // defaultKey -> defaultAnswer
	nDefault atomic.Int32
}

type defaultKey struct{ vendor, vlan string }

// defaultsMax bounds the memo: vendors × default VLANs of every site, across reloads.
const defaultsMax = 1024

// defaultAnswer is a memoized default-VLAN authorization: DefaultVLANAttrs and VLAN of them.
type defaultAnswer struct {
	attrs []cache.Attr
	vlan  string
}

// defaultAttrs is DefaultVLANAttrs, memoized, with the VLAN among them. The slice is shared:
// callers only read it.
func (a *Authorizer) defaultAttrs(vendor, vlan string) ([]cache.Attr, string) {
	k := defaultKey{vendor, vlan}
	if v, ok := a.defaults.Load(k); ok {
		d := v.(defaultAnswer)
		return d.attrs, d.vlan
	}
	attrs := DefaultVLANAttrs(vendor, vlan)
	d := defaultAnswer{attrs, VLAN(attrs)}
	if a.nDefault.Add(1) > defaultsMax {
		a.defaults.Clear()
		a.nDefault.Store(1)
	}
	a.defaults.Store(k, d)
	return d.attrs, d.vlan
}

// NewAuthorizer returns an Authorizer; Cache is required.
func NewAuthorizer(o AuthorizerOptions) (*Authorizer, error) {
	if o.Cache == nil {
		return nil, errors.New("survivability: authorizer without a cache")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Authorizer{o: o}, nil
}

// Authorize decides on a proven request from a NAS of vendor and site (proxy.Client.Vendor, Site):
//   - MAB: the MAB record of p.MAC, never a record of another method on that MAC;
//   - EAP-TLS: the EAP-TLS record whose identity equals p.Identity (case-insensitive), never a
//     record found by the MAC alone;
//
// each within the caching period of the site it was learned at; else the method's default VLAN,
// or a refusal when failmode is closed, both of the NAS's site. A Proof of any other method, or
// EAP-TLS without an identity, is refused.
func (a *Authorizer) Authorize(p Proof, vendor, site string) Verdict {
	var rec cache.Record
	var hit bool
	var err error
	var vlan string
	policy := Site{DefaultMABVLAN: a.o.DefaultMABVLAN, DefaultDot1XVLAN: a.o.DefaultDot1XVLAN, FailClosed: a.o.FailClosed}
	if a.o.Sites != nil {
		policy = a.o.Sites.For(site)
	}
	switch p.Method {
	case cache.MethodMAB:
		vlan = policy.DefaultMABVLAN
		if p.MAC != "" {
			rec, hit, err = a.o.Cache.LookupMAB(p.MAC)
			hit = hit && rec.Method == cache.MethodMAB && rec.MAC == p.MAC
		}
	case cache.MethodEAPTLS:
		if p.Identity == "" {
			return Verdict{Reason: ReasonFailClosed}
		}
		vlan = policy.DefaultDot1XVLAN
		rec, hit, err = a.o.Cache.LookupEAPTLS(p.Identity, p.MAC)
		hit = hit && rec.Method == cache.MethodEAPTLS && strings.EqualFold(rec.Identity, p.Identity)
	default:
		return Verdict{Reason: ReasonFailClosed}
	}
	if err != nil {
		a.o.Logger.Error("cache lookup failed", "mac", p.MAC, "user", p.Identity, "err", err)
		hit = false
	}
	hit = hit && a.o.Sites.Fresh(rec, a.o.Now())
	switch {
	case hit:
		attrs := authorization(rec.Attrs)
		return Verdict{Allowed: true, Attrs: attrs, VLAN: VLAN(attrs), Reason: ReasonCacheHit}
	case policy.FailClosed:
		return Verdict{Reason: ReasonFailClosed}
	}
	attrs, vlan := a.defaultAttrs(vendor, vlan)
	return Verdict{Allowed: true, Attrs: attrs, VLAN: vlan, Reason: ReasonDefaultVLAN}
}

func notReplayed(a cache.Attr) bool {
	return a.Vendor == 0 && a.Type == packet.AttrUserName || !Replayable(a)
}

// authorization keeps the attributes of a record that may be replayed: Replayable (which already
// excludes User-Name), checked again because records also arrive by import. When all may, which
// is what learning stores, it returns attrs itself (only read from then on), else a filtered copy.
func authorization(attrs []cache.Attr) []cache.Attr {
	if !slices.ContainsFunc(attrs, notReplayed) {
		return attrs
	}
	out := make([]cache.Attr, 0, len(attrs))
	for _, a := range attrs {
		if notReplayed(a) {
			continue
		}
		out = append(out, a)
	}
	return out
}
