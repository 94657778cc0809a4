package metrics

import "github.com/prometheus/client_golang/prometheus"

// IdentitySink is one identity push sink's counters (edge/identity.SinkStatus), read at scrape
// time.
type IdentitySink struct {
	Name, Type string
	Up         bool // the last delivery attempt succeeded
	Queued     int
	Sent       map[string]uint64 // by event type: connect, update, disconnect
	Failed     uint64            // delivery attempts that failed
	Downs      uint64
	Coalesced  uint64
	Dropped    uint64
	LastOK     float64 // unix seconds of the last success, 0 for never
}

var (
	descIDUp        = desc("identity_sink_up", "1 when the identity sink's last delivery attempt succeeded, 0 when it failed or none was made.", "sink", "type")
	descIDQueued    = desc("identity_sink_queued_events", "Events waiting in the identity sink's durable queue.", "sink", "type")
	descIDSent      = desc("identity_sink_sent_events_total", "Events the identity sink delivered, by event type.", "sink", "type", "event")
	descIDFailed    = desc("identity_sink_failed_attempts_total", "Delivery attempts to the identity sink that failed (each retried with capped backoff).", "sink", "type")
	descIDDowns     = desc("identity_sink_down_transitions_total", "Times the identity sink went from up (or unknown) to down.", "sink", "type")
	descIDCoalesced = desc("identity_sink_coalesced_events_total", "Superseded update events removed to keep the queue within max_queue.", "sink", "type")
	descIDDropped   = desc("identity_sink_dropped_events_total", "Events dropped: the queue was full with no update to coalesce, a record was unreadable or could not be forwarded, or the queue's inbox was full.", "sink", "type")
	descIDLastOK    = desc("identity_sink_last_success_timestamp_seconds", "Unix time of the identity sink's last successful delivery (0: never).", "sink", "type")

	identityMetrics = []*prometheus.Desc{descIDUp, descIDQueued, descIDSent, descIDFailed, descIDDowns, descIDCoalesced, descIDDropped, descIDLastOK}
)

// collectIdentity exports the sinks (nothing without identity push).
func collectIdentity(sinks []IdentitySink, gauge func(*prometheus.Desc, float64, ...string), counter func(*prometheus.Desc, uint64, ...string)) {
	for _, s := range sinks {
		up := 0.0
		if s.Up {
			up = 1
		}
		gauge(descIDUp, up, s.Name, s.Type)
		gauge(descIDQueued, float64(s.Queued), s.Name, s.Type)
		for _, ev := range []string{"connect", "update", "disconnect"} { // every type, zeros included, so rate() sees the first
			counter(descIDSent, s.Sent[ev], s.Name, s.Type, ev)
		}
		counter(descIDFailed, s.Failed, s.Name, s.Type)
		counter(descIDDowns, s.Downs, s.Name, s.Type)
		counter(descIDCoalesced, s.Coalesced, s.Name, s.Type)
		counter(descIDDropped, s.Dropped, s.Name, s.Type)
		gauge(descIDLastOK, s.LastOK, s.Name, s.Type)
	}
}
