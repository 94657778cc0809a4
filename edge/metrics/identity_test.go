package metrics

import "testing"

// TestIdentityMetrics: the identity sinks' counters are exported as read at scrape time, every
// event type with a series from the start.
func TestIdentityMetrics(t *testing.T) {
	snap := snapshot()
	snap.Identity = []IdentitySink{
		{Name: "jims", Type: "https", Up: true, Queued: 0, Sent: map[string]uint64{"connect": 5, "update": 2}, LastOK: 1.8e9},
		{Name: "siem", Type: "syslog", Queued: 17, Failed: 4, Downs: 1, Coalesced: 2, Dropped: 1},
	}
	s := startExporter(t, Options{Snapshot: func() Snapshot { return snap }})
	mfs := scrape(t, s)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"mxedge_identity_sink_up", "sink=jims,type=https", 1},
		{"mxedge_identity_sink_up", "sink=siem,type=syslog", 0},
		{"mxedge_identity_sink_queued_events", "sink=siem,type=syslog", 17},
		{"mxedge_identity_sink_sent_events_total", "event=connect,sink=jims,type=https", 5},
		{"mxedge_identity_sink_sent_events_total", "event=disconnect,sink=jims,type=https", 0},
		{"mxedge_identity_sink_failed_attempts_total", "sink=siem,type=syslog", 4},
		{"mxedge_identity_sink_down_transitions_total", "sink=siem,type=syslog", 1},
		{"mxedge_identity_sink_coalesced_events_total", "sink=siem,type=syslog", 2},
		{"mxedge_identity_sink_dropped_events_total", "sink=siem,type=syslog", 1},
		{"mxedge_identity_sink_last_success_timestamp_seconds", "sink=jims,type=https", 1.8e9},
	} {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
