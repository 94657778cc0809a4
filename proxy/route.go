package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"mxedge/proxy/packet"
)

// Request routing: an ordered list of rules, the first that matches a request names where it
// goes — a pool of upstreams (RadSec or RADIUS/UDP), dynamic discovery, or a local Access-Reject.
// A request no rule matches goes to the router's pool (the cloud NAC), as it did before routes.
// radsecproxy's realm blocks and FreeRADIUS's proxy.conf realms work the same way; eduroam is one
// use (docs/routing.md).

// Attribute types the routes read or add.
const (
	attrCalledStationID  = 30
	attrCallingStationID = 31
	attrCUI              = 89  // Chargeable-User-Identity, RFC 4372
	attrOperatorName     = 126 // Operator-Name, RFC 5580 §4.1
)

// RealmKind is how a realm pattern compares.
type RealmKind string

const (
	RealmExact  RealmKind = "exact"  // the realm, case-insensitively
	RealmSuffix RealmKind = "suffix" // the realm or any realm under it (label boundary)
	RealmRegexp RealmKind = "regexp" // a regular expression matching the whole realm, case-insensitive
	RealmEmpty  RealmKind = "empty"  // a User-Name without a realm
)

// RealmMatch is one realm pattern.
type RealmMatch struct {
	Kind  RealmKind
	Value string
	re    *regexp.Regexp
}

// Method is the authentication method a route can match on.
type Method string

const (
	MethodEAP  Method = "eap"
	MethodPAP  Method = "pap"
	MethodCHAP Method = "chap"
	MethodMAB  Method = "mab" // User-Name is the MAC the NAS reports as Calling-Station-Id
)

// RequestType is what kind of request a route matches.
type RequestType string

const (
	TypeAuth       RequestType = "auth"
	TypeAccounting RequestType = "accounting"
)

// RouteMatch selects requests. Every non-empty list must match (any of its entries); an empty
// RouteMatch matches everything.
type RouteMatch struct {
	Realms  []RealmMatch
	Clients []string // NAS client names
	Sites   []string
	SSIDs   []string // from Called-Station-Id "MAC:SSID" (RFC 3580 §3.20), exact
	Methods []Method
	Types   []RequestType
}

// TargetKind is where a route sends a request.
type TargetKind string

const (
	TargetPool     TargetKind = "pool"     // a named pool; "" or DefaultPoolName is the router's pool
	TargetDiscover TargetKind = "discover" // dynamic discovery by realm (Discoverer)
	TargetReject   TargetKind = "reject"   // a local Access-Reject with ReplyMessage
)

// DefaultPoolName names the router's own pool (the cloud NAC) in routes.
const DefaultPoolName = "default"

// Route is one rule.
type Route struct {
	Name         string
	Match        RouteMatch
	Target       TargetKind
	Pool         string // TargetPool
	ReplyMessage string // TargetReject; default "no route for this realm"
	// OperatorName is added to forwarded Access- and Accounting-Requests that carry none
	// (RFC 5580 §4.1: the namespace "1" followed by the operator's realm, e.g. "1example.edu").
	OperatorName string
	// RequestCUI adds Chargeable-User-Identity with a single NUL octet to forwarded
	// Access-Requests that carry none, which asks the home server for one (RFC 4372 §2.1); the
	// answer's CUI goes back to the NAS with the rest of the reply.
	RequestCUI bool
	// FTicks logs one F-Ticks line per Access-Accept or -Reject answered on this route.
	FTicks bool
}

// Discoverer finds the upstream pool for a realm at request time (RFC 7585 dynamic discovery;
// Discovery implements it). The router declares it; Validate reports a discover route without one.
type Discoverer interface {
	Discover(ctx context.Context, realm string) (*Pool, error)
}

// ErrNoDiscovery is a discover route without a Discoverer.
var ErrNoDiscovery = errors.New("proxy: dynamic discovery is not enabled")

// NamedPool is a pool a route can name.
type NamedPool struct {
	Name    string
	Options PoolOptions
}

// FTicksOptions configure the F-Ticks lines (the eduroam federation's log format).
type FTicksOptions struct {
	// Federation is the identifier in F-TICKS/<federation>/1.0; default "eduroam".
	Federation string
	VisCountry string // VISCOUNTRY: the visited institution's ISO 3166 country code
	VisInst    string // VISINST: the visited institution (its Operator-Name); default the route's OperatorName
	// Key, when set, puts CSI (Calling-Station-Id) into the lines as HMAC-SHA256 under this key, in
	// hex; without it CSI is left out. The MAC itself never appears.
	Key    []byte
	Logger *slog.Logger // where the lines go; nil: the routes' logger
	// Sink, when set, also gets each line (the edge's syslog sender). It runs on the request
	// path and must not block.
	Sink func(line string)
}

// RoutesOptions configure a RouteTable.
type RoutesOptions struct {
	Routes []Route
	Pools  []NamedPool
	// Discoverer serves TargetDiscover routes; nil makes such a route a Validate error.
	Discoverer Discoverer
	FTicks     FTicksOptions
	// ProxyStatePrefix is the prefix of this edge's Proxy-State (PoolOptions): a request carrying
	// one already crossed this edge and is refused. Zero: random.
	ProxyStatePrefix [4]byte
	Logger           *slog.Logger
}

// Validate checks the routes and the pools they name before anything is dialed.
func (o *RoutesOptions) Validate() error {
	pools := map[string]bool{DefaultPoolName: true}
	for i := range o.Pools {
		p := &o.Pools[i]
		if p.Name == "" || p.Name == DefaultPoolName {
			return fmt.Errorf("proxy: pool %d: name %q is reserved or empty", i, p.Name)
		}
		if pools[p.Name] {
			return fmt.Errorf("proxy: two pools named %q", p.Name)
		}
		pools[p.Name] = true
		if err := p.Options.Validate(); err != nil {
			return fmt.Errorf("proxy: pool %q: %w", p.Name, err)
		}
	}
	names := map[string]bool{}
	for i := range o.Routes {
		r := &o.Routes[i]
		name := r.Name
		if name == "" {
			name = fmt.Sprint(i)
		}
		// The label names the route's metrics: two routes of one label would be one series.
		l := r.Label(i)
		if names[l] {
			return fmt.Errorf("proxy: route %s: two routes named %q", name, l)
		}
		names[l] = true
		for j := range r.Match.Realms {
			if err := r.Match.Realms[j].compile(); err != nil {
				return fmt.Errorf("proxy: route %s: %w", name, err)
			}
		}
		for _, m := range r.Match.Methods {
			switch m {
			case MethodEAP, MethodPAP, MethodCHAP, MethodMAB:
			default:
				return fmt.Errorf("proxy: route %s: unknown method %q (want eap, pap, chap or mab)", name, m)
			}
		}
		for _, t := range r.Match.Types {
			if t != TypeAuth && t != TypeAccounting {
				return fmt.Errorf("proxy: route %s: unknown request type %q (want auth or accounting)", name, t)
			}
		}
		switch r.Target {
		case TargetPool:
			if r.Pool != "" && !pools[r.Pool] {
				return fmt.Errorf("proxy: route %s: no pool named %q", name, r.Pool)
			}
		case TargetDiscover:
			if o.Discoverer == nil {
				return fmt.Errorf("proxy: route %s: %w", name, ErrNoDiscovery)
			}
		case TargetReject:
		default:
			return fmt.Errorf("proxy: route %s: unknown target %q (want pool, discover or reject)", name, r.Target)
		}
		if r.OperatorName != "" {
			if err := ValidateOperatorName(r.OperatorName); err != nil {
				return fmt.Errorf("proxy: route %s: %w", name, err)
			}
		}
	}
	return nil
}

func (m *RealmMatch) compile() error {
	switch m.Kind {
	case RealmExact, RealmSuffix:
		if m.Value == "" {
			return fmt.Errorf("empty %s realm", m.Kind)
		}
		m.Value = strings.ToLower(strings.TrimPrefix(m.Value, "."))
	case RealmRegexp:
		re, err := regexp.Compile(`^(?i:` + m.Value + `)$`)
		if err != nil {
			return fmt.Errorf("realm regexp %q: %w", m.Value, err)
		}
		m.re = re
	case RealmEmpty:
	default:
		return fmt.Errorf("unknown realm match %q (want exact, suffix, regexp or empty)", m.Kind)
	}
	return nil
}

func (m *RealmMatch) matches(realm string, has bool) bool {
	switch m.Kind {
	case RealmEmpty:
		return !has
	case RealmExact:
		return has && strings.EqualFold(realm, m.Value)
	case RealmSuffix:
		if !has {
			return false
		}
		r := strings.ToLower(realm)
		return r == m.Value || strings.HasSuffix(r, "."+m.Value)
	case RealmRegexp:
		return has && m.re.MatchString(realm)
	}
	return false
}

// ValidateOperatorName checks an Operator-Name of the REALM namespace: "1" followed by an FQDN
// (RFC 5580 §4.1, RFC 7542 §2.2 realm syntax).
func ValidateOperatorName(s string) error {
	if len(s) < 2 || s[0] != '1' {
		return fmt.Errorf("operator name %q: must be \"1\" followed by a domain name (RFC 5580 §4.1), e.g. 1example.edu", s)
	}
	if len(s) > 253 {
		return fmt.Errorf("operator name %q: longer than 253 octets", s)
	}
	fqdn := s[1:]
	labels := strings.Split(fqdn, ".")
	if len(labels) < 2 {
		return fmt.Errorf("operator name %q: %q is not a fully qualified domain name", s, fqdn)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("operator name %q: bad label %q", s, l)
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("operator name %q: bad character %q in label %q", s, c, l)
			}
		}
	}
	return nil
}

// RouteInput is what routes match on, taken from a request (InputOf) or given by an operator
// (mxedge check --route).
type RouteInput struct {
	UserName string
	Realm    string
	HasRealm bool
	Client   string
	Site     string
	SSID     string
	Method   Method
	Type     RequestType
	SrcAddr  netip.Addr // where the request came from (loop prevention)
	Loop     bool       // carries this edge's Proxy-State
	Operator string     // Operator-Name the request carries
	HasCUI   bool
	Calling  string // Calling-Station-Id
}

// SplitRealm returns the realm of a User-Name: what follows the last '@' (RFC 7542 §2.1
// user@realm), else what precedes a '\' (the Windows DOMAIN\user form); has is false for a name
// with neither, or with an empty realm.
func SplitRealm(user string) (realm string, has bool) {
	if i := strings.LastIndexByte(user, '@'); i >= 0 {
		realm = user[i+1:]
		return realm, realm != ""
	}
	if i := strings.IndexByte(user, '\\'); i >= 0 {
		realm = user[:i]
		return realm, realm != ""
	}
	return "", false
}

// SSIDOf returns the SSID of a Called-Station-Id of the form "MAC:SSID" (RFC 3580 §3.20), with
// the MAC in any of the usual notations; "" when there is none.
func SSIDOf(called string) string {
	// The MAC is 12 hex digits, optionally separated by '-', ':' or '.'.
	hexDigits := 0
	for i := 0; i < len(called); i++ {
		c := called[i]
		switch {
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hexDigits++
			if hexDigits > 12 {
				return ""
			}
		case c == '-' || c == '.' || c == ':':
			if hexDigits == 12 && c == ':' {
				return called[i+1:]
			}
		default:
			return ""
		}
	}
	return ""
}

// InputOf reads what routes match on from req.
func (t *RouteTable) InputOf(req *Request) RouteInput {
	p := req.Packet
	in := RouteInput{Client: req.Client.Name, Site: req.Client.Site, SrcAddr: req.Src.Addr().Unmap(), Type: TypeAuth}
	if p.Code() == packet.CodeAccountingRequest {
		in.Type = TypeAccounting
	}
	if v, ok := p.Attr(packet.AttrUserName); ok {
		in.UserName = string(v)
	}
	in.Realm, in.HasRealm = SplitRealm(in.UserName)
	if v, ok := p.Attr(attrCalledStationID); ok {
		in.SSID = SSIDOf(string(v))
	}
	if v, ok := p.Attr(attrCallingStationID); ok {
		in.Calling = string(v)
	}
	if v, ok := p.Attr(attrOperatorName); ok {
		in.Operator = string(v)
	}
	in.HasCUI = p.Has(attrCUI)
	switch {
	case p.Has(packet.AttrEAPMessage):
		in.Method = MethodEAP
	case p.Has(packet.AttrCHAPPassword):
		in.Method = MethodCHAP
		if sameMAC(in.UserName, in.Calling) {
			in.Method = MethodMAB
		}
	case p.Has(packet.AttrUserPassword):
		in.Method = MethodPAP
		if sameMAC(in.UserName, in.Calling) {
			in.Method = MethodMAB
		}
	}
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == packet.AttrProxyState && len(v) == ProxyStateLen && [4]byte(v[:4]) == t.prefix {
			in.Loop = true
		}
	}
	t.MarkLoop(&in)
	return in
}

// MarkLoop sets in.Loop when in's Operator-Name shows it crossed this edge. A proxy may drop our
// Proxy-State (FreeRADIUS 3.2 does when it proxies), but keeps the Operator-Name we added
// (RFC 5580 §4.1): one of ours on a request from a server of our pools went out through this
// edge. From a NAS it is not a loop: some controllers add their own.
func (t *RouteTable) MarkLoop(in *RouteInput) {
	if in.Operator != "" && t.operators[in.Operator] && t.upstreamAt(in.SrcAddr) {
		in.Loop = true
	}
}

// upstreamAt reports whether an upstream of the table's pools has address a.
func (t *RouteTable) upstreamAt(a netip.Addr) bool {
	for _, p := range t.pools {
		for _, u := range p.ups {
			if ip, err := netip.ParseAddr(u.opts.Host); err == nil && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// sameMAC reports whether a and b are the same 48-bit MAC in any notation.
func sameMAC(a, b string) bool {
	x, ok1 := macDigits(a)
	y, ok2 := macDigits(b)
	return ok1 && ok2 && x == y
}

func macDigits(s string) (string, bool) {
	var d []byte
	for _, c := range []byte(strings.ToLower(s)) {
		switch {
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
			d = append(d, c)
		case c == '-' || c == ':' || c == '.':
		default:
			return "", false
		}
	}
	return string(d), len(d) == 12
}

func (r *Route) matches(in *RouteInput) bool {
	m := &r.Match
	if len(m.Realms) > 0 && !anyOf(m.Realms, func(x RealmMatch) bool { return x.matches(in.Realm, in.HasRealm) }) {
		return false
	}
	if len(m.Clients) > 0 && !anyOf(m.Clients, func(x string) bool { return x == in.Client }) {
		return false
	}
	if len(m.Sites) > 0 && !anyOf(m.Sites, func(x string) bool { return strings.EqualFold(x, in.Site) }) {
		return false
	}
	if len(m.SSIDs) > 0 && !anyOf(m.SSIDs, func(x string) bool { return x == in.SSID }) {
		return false
	}
	if len(m.Methods) > 0 && !anyOf(m.Methods, func(x Method) bool { return x == in.Method }) {
		return false
	}
	if len(m.Types) > 0 && !anyOf(m.Types, func(x RequestType) bool { return x == in.Type }) {
		return false
	}
	return true
}

func anyOf[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if f(x) {
			return true
		}
	}
	return false
}

// RouteStats count what the routes did, on the request path (plain atomics, read at scrape time);
// the router's Stats still count every request. A table installed by a reload carries on the
// counters of the one it replaces (adopt), so a reload is no counter reset.
type RouteStats struct {
	Routes  []*RouteCounters // per route, in order
	Default *atomic.Uint64   // no route matched: the router's pool
	Loops   *atomic.Uint64   // refused: the request had crossed this edge already
}

// RouteCounters are one route's counters.
type RouteCounters struct {
	Matched atomic.Uint64 // requests the route took (loops refused excluded)
	// Answers are the answers the route's target (its pool's servers, or the discovered realm's)
	// gave, by AnswerCodes; local decisions for the default pool are not among them.
	Answers [answerCodes]atomic.Uint64
	// NoUpstream: requests none of the target's servers answered (no connection, all down); they
	// got the no-upstream outcome, or for the default pool survivability's answer.
	NoUpstream atomic.Uint64
	// Rejected: Access-Rejects the route made itself (a reject route).
	Rejected atomic.Uint64
	// DiscoveryFailed: requests of a discover route whose realm discovery could not resolve.
	DiscoveryFailed atomic.Uint64
}

// Answer codes of RouteCounters.Answers.
const (
	answerAccept = iota
	answerReject
	answerChallenge
	answerAccounting
	answerCodes
)

// AnswerCodes names RouteCounters.Answers, in order (metric label values).
var AnswerCodes = [answerCodes]string{"accept", "reject", "challenge", "accounting"}

func answerIndex(c packet.Code) (int, bool) {
	switch c {
	case packet.CodeAccessAccept:
		return answerAccept, true
	case packet.CodeAccessReject:
		return answerReject, true
	case packet.CodeAccessChallenge:
		return answerChallenge, true
	case packet.CodeAccountingResponse:
		return answerAccounting, true
	}
	return 0, false
}

// Label names route i for metrics, events and the decision log: its name, else its position
// counted from 1 as "#N" (the number mxedge check --route prints).
func (r *Route) Label(i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("#%d", i+1)
}

// TargetLabel says where the route sends requests: the pool's name (DefaultPoolName for the
// cloud), "discover" or "reject".
func (r *Route) TargetLabel() string {
	switch r.Target {
	case TargetDiscover:
		return "discover"
	case TargetReject:
		return "reject"
	}
	if r.Pool == "" {
		return DefaultPoolName
	}
	return r.Pool
}

// RouteTable holds the routes and owns the pools they name (not the router's own pool).
type RouteTable struct {
	opts   RoutesOptions
	routes []Route
	labels []string // Route.Label of each route, made once: the request path reports them
	pools  map[string]*Pool
	prefix [4]byte
	stats  *RouteStats
	log    *slog.Logger
	ftLog  *slog.Logger
	// operators are the Operator-Names the routes add (loop detection).
	operators map[string]bool
}

// NewRouteTable validates o and creates the pools; Run connects them.
func NewRouteTable(o RoutesOptions) (*RouteTable, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FTicks.Federation == "" {
		o.FTicks.Federation = "eduroam"
	}
	t := &RouteTable{opts: o, routes: o.Routes, pools: map[string]*Pool{}, prefix: o.ProxyStatePrefix, log: o.Logger,
		stats: &RouteStats{Routes: make([]*RouteCounters, len(o.Routes)), Default: new(atomic.Uint64), Loops: new(atomic.Uint64)}}
	t.labels = make([]string, len(o.Routes))
	for i := range t.stats.Routes {
		t.stats.Routes[i] = new(RouteCounters)
		t.labels[i] = o.Routes[i].Label(i)
	}
	if t.prefix == [4]byte{} {
		rand.Read(t.prefix[:])
	}
	t.operators = map[string]bool{}
	for _, r := range o.Routes {
		if r.OperatorName != "" {
			t.operators[r.OperatorName] = true
		}
	}
	t.ftLog = o.FTicks.Logger
	if t.ftLog == nil {
		t.ftLog = o.Logger
	}
	for _, np := range o.Pools {
		po := np.Options
		po.ProxyStatePrefix = t.prefix
		if po.Logger == nil {
			po.Logger = o.Logger
		}
		p, err := NewPool(po)
		if err != nil {
			return nil, fmt.Errorf("proxy: pool %q: %w", np.Name, err)
		}
		t.pools[np.Name] = p
	}
	return t, nil
}

// adopt makes t count on in old's counters: the table-wide ones, and each route's whose label and
// target are those of a route of old. Call it before t serves.
func (t *RouteTable) adopt(old *RouteTable) {
	if t == nil || old == nil {
		return
	}
	t.stats.Default, t.stats.Loops = old.stats.Default, old.stats.Loops
	prev := make(map[[2]string]*RouteCounters, len(old.routes))
	for i := range old.routes {
		prev[[2]string{old.labels[i], old.routes[i].TargetLabel()}] = old.stats.Routes[i]
	}
	for i := range t.routes {
		if c, ok := prev[[2]string{t.labels[i], t.routes[i].TargetLabel()}]; ok {
			t.stats.Routes[i] = c
		}
	}
}

// ProxyStatePrefix is the prefix the table's pools (and the edge's default pool) put in
// Proxy-State.
func (t *RouteTable) ProxyStatePrefix() [4]byte { return t.prefix }

// Stats returns the routes' counters.
func (t *RouteTable) Stats() *RouteStats { return t.stats }

// Routes returns the routes in order.
func (t *RouteTable) Routes() []Route { return t.routes }

// Pools returns the named pools.
func (t *RouteTable) Pools() map[string]*Pool { return t.pools }

// Run connects every named pool until ctx ends. A nil table has nothing to run.
func (t *RouteTable) Run(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var wg sync.WaitGroup
	for _, p := range t.pools {
		wg.Add(1)
		go func() { defer wg.Done(); p.Run(ctx) }()
	}
	wg.Wait()
	return nil
}

// WaitReady waits until every named pool has settled (Pool.WaitReady).
func (t *RouteTable) WaitReady(ctx context.Context) {
	if t == nil {
		return
	}
	for _, p := range t.pools {
		p.WaitReady(ctx)
	}
}

// Inflight is the number of requests the named pools are still waiting on.
func (t *RouteTable) Inflight() int64 {
	if t == nil {
		return 0
	}
	var n int64
	for _, p := range t.pools {
		n += p.Inflight()
	}
	return n
}

// Decision is where a request goes.
type Decision struct {
	Route *Route // nil: no route matched (the router's pool)
	Index int    // the route's position; -1 for none
	Loop  bool   // refused: it crossed this edge already
}

// Decide returns the route in takes. It never blocks.
func (t *RouteTable) Decide(in *RouteInput) Decision {
	for i := range t.routes {
		r := &t.routes[i]
		if !r.matches(in) {
			continue
		}
		return Decision{Route: r, Index: i, Loop: in.Loop}
	}
	return Decision{Index: -1, Loop: in.Loop}
}

// Explain describes a decision for an operator (mxedge check --route).
func (d Decision) Explain() string {
	if d.Route == nil {
		s := "no route matched: default pool (the cloud NAC)"
		if d.Loop {
			s = "refused: the request already crossed this edge (loop)"
		}
		return s
	}
	r := d.Route
	name := r.Name
	if name == "" {
		name = fmt.Sprint(d.Index)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "route %s (#%d): ", name, d.Index+1)
	switch {
	case d.Loop:
		b.WriteString("refused: the request already crossed this edge (loop)")
		return b.String()
	case r.Target == TargetReject:
		fmt.Fprintf(&b, "Access-Reject, Reply-Message %q", r.replyMessage())
		return b.String()
	case r.Target == TargetDiscover:
		b.WriteString("dynamic discovery by realm")
	case r.Pool == "" || r.Pool == DefaultPoolName:
		b.WriteString("pool default (the cloud NAC)")
	default:
		fmt.Fprintf(&b, "pool %s", r.Pool)
	}
	if r.OperatorName != "" {
		fmt.Fprintf(&b, ", adds Operator-Name %s", r.OperatorName)
	}
	if r.RequestCUI {
		b.WriteString(", requests Chargeable-User-Identity")
	}
	if r.FTicks {
		b.WriteString(", F-Ticks logged")
	}
	return b.String()
}

func (r *Route) replyMessage() string {
	if r.ReplyMessage != "" {
		return r.ReplyMessage
	}
	return "no route for this realm"
}

// extra encodes the attributes r adds to a forwarded copy of a request described by in.
func (r *Route) extra(in *RouteInput) []byte {
	var b []byte
	if r.OperatorName != "" && in.Operator == "" {
		b = append(b, attrOperatorName, byte(2+len(r.OperatorName)))
		b = append(b, r.OperatorName...)
	}
	if r.RequestCUI && in.Type == TypeAuth && !in.HasCUI {
		// RFC 4372 §2.1: a NAS that supports CUI sends it with a single zero octet in the
		// initial Access-Request to ask the home server for one.
		b = append(b, attrCUI, 3, 0)
	}
	return b
}

// fticks logs one F-Ticks line for an answer on route r.
func (t *RouteTable) fticks(r *Route, in *RouteInput, code packet.Code) {
	if !r.FTicks || in.Type != TypeAuth {
		return
	}
	result := "FAIL"
	switch code {
	case packet.CodeAccessAccept:
		result = "OK"
	case packet.CodeAccessReject:
	default:
		return // a Challenge is half a conversation
	}
	ft := &t.opts.FTicks
	visInst := ft.VisInst
	if visInst == "" {
		visInst = r.OperatorName
	}
	var b strings.Builder
	fmt.Fprintf(&b, "F-TICKS/%s/1.0#REALM=%s#", ft.Federation, fticksValue(in.Realm))
	if ft.VisCountry != "" {
		fmt.Fprintf(&b, "VISCOUNTRY=%s#", fticksValue(ft.VisCountry))
	}
	if visInst != "" {
		fmt.Fprintf(&b, "VISINST=%s#", fticksValue(visInst))
	}
	if len(ft.Key) > 0 && in.Calling != "" {
		m := hmac.New(sha256.New, ft.Key)
		m.Write([]byte(strings.ToLower(in.Calling)))
		fmt.Fprintf(&b, "CSI=%s#", hex.EncodeToString(m.Sum(nil)))
	}
	fmt.Fprintf(&b, "RESULT=%s#", result)
	line := b.String()
	t.ftLog.Info("f-ticks", "line", line)
	if ft.Sink != nil {
		ft.Sink(line)
	}
}

// fticksValue keeps only the characters an F-Ticks label may hold (ALPHA DIGIT _ - : . , ;), so
// a crafted realm cannot add an attribute to the line.
func fticksValue(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			return c
		case strings.ContainsRune("_-:.,;", c):
			return c
		}
		return -1
	}, s)
}
