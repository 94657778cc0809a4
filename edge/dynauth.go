package edge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/control"
	"mxedge/edge/decisionlog"
	"mxedge/edge/events"
	"mxedge/edge/metrics"
	"mxedge/proxy/dynauth"
	"mxedge/survivability"
)

// dynAuthOptions are the relay's options from the configuration, with what the edge supplies.
func (e *Edge) dynAuthOptions(b *config.Built) dynauth.Options {
	o := b.DynAuth
	o.Logger, o.Observer, o.Sessions = e.log, dynAuthEvents{e}, e.sessionLookup()
	return o
}

// newDynAuth builds the CoA/Disconnect relay; New binds it after the front door.
func (e *Edge) newDynAuth(b *config.Built) error {
	r, err := dynauth.New(e.dynAuthOptions(b))
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.dynauth = r
	if e.sessions == nil {
		return nil // nothing records which sessions were admitted locally
	}
	e.reconciler, err = dynauth.NewReconciler(dynauth.ReconcileOptions{
		Sessions: e.reconcileTable(),
		Rate:     b.Reconcile.Rate,
		Site: func(site string) dynauth.SitePolicy {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.cfg.Built().Reconcile.Policy(site) // the policy of the configuration in use
		},
		Up:     func() bool { return e.health.Mode() == survivability.ModeUp },
		Logger: e.log,
	}, r)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return nil
}

// reconcileTable is the table as the reconciler reads it: in a cluster, only the sessions this
// edge owns (Edge.ownedReconcile).
func (e *Edge) reconcileTable() sessionTable {
	t := sessionTable{s: e.sessions}
	if e.clusterParts.c != nil {
		t.owned = e.ownedReconcile
	}
	return t
}

// runReconciler serves reconciliation rounds; each failback kicks one (New's health OnChange).
func (e *Edge) runReconciler(ctx context.Context) {
	if e.reconciler != nil {
		e.reconciler.Run(ctx)
	}
}

// kickReconcile starts a reconciliation round after failback.
func (e *Edge) kickReconcile() {
	if e.reconciler != nil {
		e.reconciler.Kick()
	}
}

// reconcileStatus is reconciliation's progress for `mxedge status`; nil without a session table.
func (e *Edge) reconcileStatus() *dynauth.ReconcileProgress {
	if e.reconciler == nil {
		return nil
	}
	p := e.reconciler.Progress()
	if e.sessions != nil {
		p.Pending = e.sessions.Stats().NeedReconcile
	}
	return &p
}

// DynAuth returns the CoA/Disconnect relay (tests, status).
func (e *Edge) DynAuth() *dynauth.Relay { return e.dynauth }

// dynAuthEvents turns each relayed CoA or Disconnect into a NAC event: "NAC CoA Disconnect" or
// "NAC CoA Reauthenticate" with who asked, the NAS, the session and the result.
type dynAuthEvents struct{ e *Edge }

func (d dynAuthEvents) DynAuthOutcome(o dynauth.Outcome) {
	ev := events.Event{Time: time.Now(), Allowed: o.Result == "ack", NAS: o.NAS, MAC: o.Session.CallingStationID,
		Identity: o.Session.UserName, Source: events.SourceLocal, Method: "coa",
		Type: survivability.TypeCoAReauthenticate, Reason: o.Result + " from " + o.From + " by " + o.Route}
	if o.Code == "Disconnect-Request" {
		ev.Method, ev.Type = "disconnect", survivability.TypeCoADisconnect
	}
	if o.ErrorCause != 0 {
		ev.Reason += " error-cause " + strconv.FormatUint(uint64(o.ErrorCause), 10)
	}
	if len(o.From) > 6 && o.From[:6] == "cloud:" {
		ev.Source, ev.Upstream = events.SourceUpstream, o.From[6:]
	}
	d.e.events.Publish(ev)
	d.e.dlog.Record(coaEntry(o, ev))
}

// coaEntry is the decision log's line for a relayed CoA or Disconnect (edge/decisionlog): the answer
// sent back to whoever asked, who asked, the result and how the NAS was found.
func coaEntry(o dynauth.Outcome, ev events.Event) decisionlog.Entry {
	ack, nak := decisionlog.CodeCoAACK, decisionlog.CodeCoANAK
	if o.Code == "Disconnect-Request" {
		ack, nak = decisionlog.CodeDisconnectACK, decisionlog.CodeDisconnectNAK
	}
	code := nak // a NAK relayed from the NAS, or mxedge's own (502, 503, 506 after a timeout)
	if o.Result == "ack" {
		code = ack
	}
	who := o.From
	if ev.Source == events.SourceUpstream {
		who = "cloud"
	}
	reason := o.Result
	if o.Route != "" {
		reason += " by " + o.Route
	}
	if o.ErrorCause != 0 {
		reason += " error-cause " + strconv.FormatUint(uint64(o.ErrorCause), 10)
	}
	return decisionlog.Entry{Time: ev.Time, CoA: true, Code: code, NAS: o.NAS, MAC: ev.MAC, User: ev.Identity,
		Method: ev.Method, Decider: who, Reason: reason, Upstream: ev.Upstream}
}

// coaMetrics reads the relay's counters and reconciliation's progress for a scrape.
func (e *Edge) coaMetrics() metrics.CoA {
	st := e.dynauth.Stats()
	m := metrics.CoA{Requests: st.Requests.Load(), ACK: st.ACK.Load(), NAK: st.NAKs(), Timeouts: st.Timeouts.Load(),
		Retransmissions: st.Retransmissions.Load(), Dropped: map[string]uint64{}}
	for _, r := range dynauth.DropReasons() { // every reason, zeros included, so rate() sees the first drop
		m.Dropped[r.String()] = st.Dropped[r].Load()
	}
	for _, cause := range []uint32{dynauth.CauseRequestNotRoutable, dynauth.CauseSessionNotFound, dynauth.CauseResourcesUnavailable} {
		m.NAK[cause] += 0 // the causes mxedge makes itself, zeros included
	}
	nases := st.NASes()
	for _, name := range e.dynauth.NASNames() {
		if nases[name] == nil {
			nases[name] = st.NAS(name) // configured NASes, zeros included
		}
	}
	for _, name := range slices.Sorted(maps.Keys(nases)) {
		n := nases[name]
		m.NAS = append(m.NAS, metrics.CoANAS{Name: name, Requests: n.Requests.Load(), ACK: n.ACK.Load(), NAK: n.NAK.Load(), Lost: n.Timeouts.Load()})
	}
	if e.reconciler != nil {
		p := e.reconciler.Progress()
		m.Reconcile = metrics.Reconcile{Running: p.Running, Sent: p.Sent, ACK: p.ACK, NAK: p.NAK, Timeouts: p.Timeouts, Skipped: p.Skipped, N: p.Rounds}
	}
	return m
}

// operatorCoA serves `mxedge coa` (control /v1/coa): the session named by MAC, Acct-Session-Id,
// user or IP is found in the session table (or, without one, on the NAS the operator names), and
// the action goes to its NAS rendered for the NAS's vendor.
func (e *Edge) operatorCoA(ctx context.Context, r control.CoARequest) (control.CoAResult, error) {
	var a dynauth.Action
	switch r.Action {
	case "disconnect":
		a = dynauth.ActionDisconnect
	case "reauthenticate":
		a = dynauth.ActionReauthenticate
	case "bounce-port":
		a = dynauth.ActionBouncePort
	default:
		return control.CoAResult{}, fmt.Errorf("edge: coa: unknown action %q", r.Action)
	}
	q := dynauth.SessionQuery{AcctSessionID: r.SessionID, CallingStationID: r.MAC, UserName: r.User}
	if r.IP != "" {
		ip, err := netip.ParseAddr(r.IP)
		if err != nil {
			return control.CoAResult{}, fmt.Errorf("edge: coa: ip %q: %w", r.IP, err)
		}
		q.FramedIP = ip
	}
	t := dynauth.Target{NAS: r.NAS, AcctSessionID: q.AcctSessionID, CallingStationID: q.CallingStationID,
		UserName: q.UserName, FramedIP: q.FramedIP}
	if sessions := e.sessionLookup(); sessions != nil {
		if ref, ok := sessions.FindSession(q); ok && (r.NAS == "" || ref.NAS == r.NAS) {
			t = dynauth.Target{NAS: ref.NAS, NASAddr: ref.NASAddr, AcctSessionID: ref.AcctSessionID,
				CallingStationID: ref.CallingStationID, UserName: ref.UserName, FramedIP: ref.FramedIP}
		} else if r.NAS == "" {
			return control.CoAResult{}, errors.New("edge: coa: no live session matches in the session table (name the NAS with --nas to send anyway)")
		}
	} else if r.NAS == "" {
		return control.CoAResult{}, errors.New("edge: coa: no session table to find the session's NAS in: name it with --nas")
	}
	o, err := e.dynauth.Originate(ctx, "operator", a, t)
	if err != nil {
		return control.CoAResult{}, err
	}
	return control.CoAResult{Code: o.Code, Result: o.Result, NAS: o.NAS, ErrorCause: o.ErrorCause, Dur: o.Dur}, nil
}
