package metrics

import "testing"

// TestSessionMetrics: the session table's counters are exported as read at scrape time, and not at
// all when the table is off.
func TestSessionMetrics(t *testing.T) {
	snap := snapshot()
	snap.Sessions = &Sessions{
		Active: []SessionCount{{NAS: "sw1", Site: "HQ", Live: 40}, {NAS: "wlc", Site: "Branch 2", Live: 7}},
		Stored: 50, NeedReconcile: 3, Started: 90, Stopped: 43, Expired: 40, Evicted: 1,
		Lost: map[string]uint64{"queue-full": 2, "refused": 0, "write-error": 0},
	}
	s := startExporter(t, Options{Snapshot: func() Snapshot { return snap }})
	mfs := scrape(t, s)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"mxedge_sessions_active", "nas=sw1,site=HQ", 40},
		{"mxedge_sessions_active", "nas=wlc,site=Branch 2", 7},
		{"mxedge_sessions_stored", "", 50},
		{"mxedge_sessions_need_reconcile", "", 3},
		{"mxedge_sessions_started_total", "", 90},
		{"mxedge_sessions_stopped_total", "", 43},
		{"mxedge_sessions_expired_total", "", 40},
		{"mxedge_sessions_evicted_total", "", 1},
		{"mxedge_session_updates_lost_total", "reason=queue-full", 2},
		{"mxedge_session_updates_lost_total", "reason=write-error", 0},
	} {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	snap.Sessions = nil
	if _, ok := scrape(t, s)["mxedge_sessions_stored"]; ok {
		t.Fatal("session metrics exported with the table off")
	}
}
