package edge

// The access decision log's feed (edge/decisionlog) and the logging settings a reload applies.

import (
	"mxedge/edge/config"
	"mxedge/edge/decisionlog"
	"mxedge/survivability"
)

// recordDecision hands an access decision to the decision log: a copy of a few strings into its
// queue, on the goroutine that made the decision; formatting and writing happen on the log's own
// goroutine. Accounting is no access decision.
func (e *Edge) recordDecision(ev survivability.Event) {
	if ev.Method == "accounting" {
		return
	}
	code := decisionlog.CodeReject
	switch {
	case ev.Allowed:
		code = decisionlog.CodeAccept
	case survivability.Unanswered(ev.Reason):
		code = decisionlog.CodeNone
	}
	e.dlog.Record(decisionlog.Entry{Time: ev.Time, Code: code, NAS: ev.NAS, Port: ev.Port, SSID: ev.SSID, MAC: ev.MAC,
		User: ev.Identity, Method: ev.Method, VLAN: ev.VLAN, Decider: survivability.DeciderOf(ev).String(),
		Reason: ev.Reason, Upstream: ev.Upstream, Site: ev.Site, Route: ev.Route, Pool: ev.Pool, Realm: ev.Realm})
}

// applyLogging applies a reloaded log.level (through Options.LogLevel) and decision log settings.
func (e *Edge) applyLogging(old, b *config.Built) {
	if v := e.opts.LogLevel; v != nil && v.Level() != b.LogLevel {
		e.log.Info("log level changed", "reason", b.LogLevel.String())
		v.Set(b.LogLevel)
	}
	d := b.DecisionLog
	if err := e.dlog.Reconfigure(d.Mode, d.Rate, d.RejectRate); err != nil {
		e.log.Error("decision log not reconfigured", "err", err) // Check validated it
	}
	if b.LogFormat != old.LogFormat {
		e.log.Warn("log.format changed: restart mxedge to apply it")
	}
}
