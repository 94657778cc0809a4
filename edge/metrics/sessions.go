package metrics

import "github.com/prometheus/client_golang/prometheus"

// Sessions are the session table's counters (cache/session.Stats and edge's tracker).
type Sessions struct {
	Active        []SessionCount // live sessions per NAS and site
	Stored        int            // sessions stored, ended ones in their grace period included
	NeedReconcile int            // admitted locally, not yet re-authorized by the cloud
	Started       uint64         // sessions begun (first Access-Accept or accounting of a session)
	Stopped       uint64         // sessions ended by a Stop or the NAS's Accounting-On/Off
	Expired       uint64         // removed after their grace or their missed interims
	Evicted       uint64         // removed to admit a new session at the cap
	Lost          map[string]uint64
}

// SessionCount is the live sessions of one NAS at one site.
type SessionCount struct {
	NAS, Site string
	Live      int
}

var (
	descSessActive  = desc("sessions_active", "Live sessions (authorized or accounting active) in the session table, per NAS and site.", "nas", "site")
	descSessStored  = desc("sessions_stored", "Sessions in the session table, stopped ones kept for their grace period included.")
	descSessRecon   = desc("sessions_need_reconcile", "Sessions admitted locally while the cloud was unreachable and not yet re-authorized by it.")
	descSessStarted = desc("sessions_started_total", "Sessions the table began: a first Access-Accept, or accounting for a session it had not seen.")
	descSessStopped = desc("sessions_stopped_total", "Sessions ended by an Accounting Stop, or by the NAS's Accounting-On/Off.")
	descSessExpired = desc("sessions_expired_total", "Sessions removed by the sweeper: their stop grace passed, or they missed their interim updates.")
	descSessEvicted = desc("sessions_evicted_total", "Sessions removed to admit a new one at sessions.max_entries.")
	descSessLost    = desc("session_updates_lost_total", "Packets the session table did not record, by reason (queue-full: the writer was behind; refused: a field too long; write-error).", "reason")

	sessionMetrics = []*prometheus.Desc{descSessActive, descSessStored, descSessRecon, descSessStarted, descSessStopped,
		descSessExpired, descSessEvicted, descSessLost}
)

// collectSessions exports s (nothing when the table is off).
func collectSessions(s *Sessions, gauge func(*prometheus.Desc, float64, ...string), counter func(*prometheus.Desc, uint64, ...string)) {
	if s == nil {
		return
	}
	for _, a := range s.Active {
		gauge(descSessActive, float64(a.Live), a.NAS, a.Site)
	}
	gauge(descSessStored, float64(s.Stored))
	gauge(descSessRecon, float64(s.NeedReconcile))
	counter(descSessStarted, s.Started)
	counter(descSessStopped, s.Stopped)
	counter(descSessExpired, s.Expired)
	counter(descSessEvicted, s.Evicted)
	for _, r := range sortedKeys(s.Lost) {
		counter(descSessLost, s.Lost[r], r)
	}
}
