package edge

// Identity push (docs/identity.md): the session tracker learns every acknowledged
// Accounting-Request and every Access-Accept — the cloud's through answerObserver, local ones
// through identityFallback — and the pusher queues and delivers the events per sink. Both run off
// the request path: the request path only hands the tracker a copy through a bounded inbox.

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"time"

	"mxedge/cache/session"
	"mxedge/edge/config"
	"mxedge/edge/events"
	"mxedge/edge/identity"
	"mxedge/edge/metrics"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// identityPush is the running identity push: nil in Edge when no sink is configured.
type identityPush struct {
	pusher  *identity.Pusher
	tracker *identity.Tracker
}

// newIdentity opens the sinks' queues. secret finds a NAS client's secret for the accounting copy.
// With the session table on (table), the events come from its changes (sessionOptions) and the
// identity tracker only feeds the accounting copy; without it, the tracker makes the events too.
func newIdentity(c *config.Identity, table bool, log *slog.Logger, secret func(string) []byte, bus *events.Bus) (*identityPush, error) {
	if c == nil {
		return nil, nil
	}
	o := c.Options
	o.Logger, o.NASSecret = log, secret
	// A sink going down or coming back is a NAC event too (`mxedge events --type ...`), beside
	// its journal line.
	o.OnSinkState = func(name, typ string, up bool, reason string) {
		ev := events.Event{Time: time.Now(), Allowed: up, Method: "identity", Reason: typ + " sink " + name,
			Source: events.SourceLocal, Type: survivability.TypeIdentitySinkDown}
		if up {
			ev.Type = survivability.TypeIdentitySinkUp
		} else if reason != "" {
			ev.Reason += ": " + reason
		}
		bus.Publish(ev)
	}
	p, err := identity.New(o)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	var obs identity.SessionObserver = p
	if table {
		obs = accountingOnly{p}
	}
	t := identity.NewTracker(identity.TrackerOptions{Observer: obs, SessionTimeout: c.SessionTimeout, Logger: log})
	return &identityPush{pusher: p, tracker: t}, nil
}

// accountingOnly passes the tracker's accounting to the copy sinks and leaves the events to the
// session table.
type accountingOnly struct{ p *identity.Pusher }

func (a accountingOnly) SessionChanged(_, _ *identity.Session) {}
func (a accountingOnly) Accounting(s *identity.Session, received time.Time, pkt packet.Packet) {
	a.p.Accounting(s, received, pkt)
}

// sessionOptions makes the pusher the session table's observer (nil o: the table is off).
func (ip *identityPush) sessionOptions(o *session.Options) *session.Options {
	if o == nil || ip == nil {
		return o
	}
	so := *o
	so.Observer = tableObserver{ip.pusher}
	return &so
}

// tableObserver turns the session table's changes into identity sessions (cache/session.Record
// to identity.Session).
type tableObserver struct{ p *identity.Pusher }

func (t tableObserver) SessionChanged(c session.Change, prev, cur *session.Record) {
	var ps, cs *identity.Session
	if prev != nil {
		ps = fromRecord(prev)
	}
	if cur != nil {
		cs = fromRecord(cur)
		if c == session.ChangeEnded {
			cs.Ended, cs.EndReason = true, identity.ReasonStop
		}
	}
	t.p.SessionChanged(ps, cs)
}

func fromRecord(r *session.Record) *identity.Session {
	s := &identity.Session{NAS: r.NAS, NASAddress: r.NASAddr, NASPort: r.NASPortID, SessionID: r.AcctSessionID,
		// The record keeps one User-Name: the Access-Accept's when it named one, else the request's.
		UserName: r.UserName, Identity: r.UserName, MAC: r.MAC, SSID: r.SSID, Site: r.Site, VLAN: r.VLAN,
		Method: r.Method, Started: r.Started, Updated: r.Updated, AuthTime: r.Authorized,
		// Order is kept per record: the record's id is stable from its Accept through its Stop.
		Key: strconv.FormatUint(r.ID, 10)}
	if s.NASPort == "" && r.HasNASPort {
		s.NASPort = strconv.FormatUint(uint64(r.NASPort), 10)
	}
	switch {
	case r.Decider == session.DecidedCloud:
		s.Authorizer = identity.AuthorizerCloud
	case r.Decider.Local():
		s.Authorizer = identity.AuthorizerLocal
	}
	if r.FramedIP.IsValid() {
		s.Addrs = append(s.Addrs, r.FramedIP)
	}
	if r.FramedIPv6.IsValid() {
		s.Addrs = append(s.Addrs, r.FramedIPv6)
	}
	if s.Started.IsZero() {
		s.Started = r.Authorized
	}
	return s
}

// observe hands the tracker what a NAS was answered: an acknowledged Accounting-Request or an
// Access-Accept, decided by authorizer (cloud or local).
func (ip *identityPush) observe(req *proxy.Request, resp packet.Packet, authorizer string) {
	if ip == nil || resp == nil {
		return
	}
	switch resp.Code() {
	case packet.CodeAccountingResponse:
		ip.tracker.Accounting(req.Client.Name, req.Client.Site, req.Src.Addr(), req.Received, req.Packet)
	case packet.CodeAccessAccept:
		ip.tracker.Accepted(req.Client.Name, req.Client.Site, req.Packet, resp, authorizer)
	}
}

// run runs the tracker and the sinks until ctx ends: the tracker first finishes what the request
// path handed it, then the sinks commit what the tracker offered, so a clean stop loses nothing.
func (ip *identityPush) run(ctx context.Context) {
	pctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ip.pusher.Run(pctx)
	}()
	ip.tracker.Run(ctx)
	stop()
	wg.Wait()
}

func (ip *identityPush) close() error {
	if ip == nil {
		return nil
	}
	return ip.pusher.Close()
}

// warnIdentityChanged says that a reload does not apply a changed identity section: the sinks
// and their queues are built once, at start.
func warnIdentityChanged(log *slog.Logger, old, cur *config.Config) {
	if !reflect.DeepEqual(old.File.Identity, cur.File.Identity) {
		log.Warn("identity sinks changed: restart mxedge to apply them")
	}
}

// IdentityStatus is /v1/identity: `mxedge identity status`.
type IdentityStatus struct {
	Schema   string                `json:"schema"`
	Time     time.Time             `json:"time"`
	Sinks    []identity.SinkStatus `json:"sinks"`
	Sessions int64                 `json:"sessions"`
	Dropped  map[string]uint64     `json:"tracker_dropped"`
}

// IdentityStatus returns the identity push's state; with no sink configured, Sinks is empty.
func (e *Edge) IdentityStatus() IdentityStatus {
	s := IdentityStatus{Schema: identity.StatusSchema, Time: time.Now().UTC(), Sinks: []identity.SinkStatus{}, Dropped: map[string]uint64{}}
	if e.identity != nil {
		s.Sinks = e.identity.pusher.Status()
		s.Sessions = e.identity.tracker.Live()
		s.Dropped = e.identity.tracker.Dropped()
	}
	return s
}

// identityMetrics reads the sinks' counters for a scrape.
func (e *Edge) identityMetrics() []metrics.IdentitySink {
	if e.identity == nil {
		return nil
	}
	var out []metrics.IdentitySink
	for _, s := range e.identity.pusher.Status() {
		m := metrics.IdentitySink{Name: s.Name, Type: s.Type, Up: s.State == "up", Queued: s.Queued, Sent: s.SentByType,
			Failed: s.Failed, Downs: s.Downs, Coalesced: s.Coalesced, Dropped: s.Dropped}
		if s.LastOK != nil {
			m.LastOK = float64(s.LastOK.UnixNano()) / 1e9
		}
		out = append(out, m)
	}
	return out
}

// identityFallback is the local decision engine seen by the router, telling identity push of the
// accounting it acknowledged and the Access-Accepts it made.
type identityFallback struct {
	proxy.Fallback
	ip *identityPush
}

func (f identityFallback) Serve(ctx context.Context, req *proxy.Request, cause error) (packet.Packet, error) {
	resp, err := f.Fallback.Serve(ctx, req, cause)
	if err == nil {
		f.ip.observe(req, resp, identity.AuthorizerLocal)
	}
	return resp, err
}

// Slow passes the engine's cost hint through (proxy.SlowFallback).
func (f identityFallback) Slow(req *proxy.Request) bool {
	s, ok := f.Fallback.(proxy.SlowFallback)
	return ok && s.Slow(req)
}
