package edge

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/events"
	"mxedge/edge/metrics"
	"mxedge/proxy/dynauth"
	"mxedge/survivability"
)

// dynAuthOptions are the relay's options from the configuration, with what the edge supplies.
func (e *Edge) dynAuthOptions(b *config.Built) dynauth.Options {
	o := b.DynAuth
	o.Logger, o.Observer = e.log, dynAuthEvents{e}
	return o
}

// newDynAuth builds the CoA/Disconnect relay; New binds it after the front door.
func (e *Edge) newDynAuth(b *config.Built) error {
	r, err := dynauth.New(e.dynAuthOptions(b))
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.dynauth = r
	return nil
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
