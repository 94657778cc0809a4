package edge

import (
	"fmt"
	"strconv"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/events"
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
