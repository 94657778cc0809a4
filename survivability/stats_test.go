package survivability

import (
	"sync"
	"testing"
)

func TestDecisionStats(t *testing.T) {
	s := NewDecisionStats()
	for _, ev := range []Event{
		{Allowed: true, Method: "mab", Source: SourceUpstream},
		{Allowed: false, Method: "pap", Source: SourceUpstream},
		{Allowed: true, Method: "mab", Source: SourceLocal, Reason: "cache-hit"},
		{Allowed: true, Method: "mab", Source: SourceLocal, Reason: "default-vlan"},
		{Allowed: false, Method: "mab", Source: SourceLocal, Reason: "failmode-closed"},
		{Allowed: false, Method: "eap-tls", Source: SourceLocal, Reason: "cert-expired"},
		{Allowed: false, Method: "chap", Source: SourceLocal, Reason: "unsupported-method"},
		{Allowed: false, Method: "pap", Source: SourceLocal, Reason: ReasonPasswordNoAnswer}, // nothing sent
		{Allowed: true, Method: "accounting", Source: SourceLocal, Reason: "spooled"},
		{Method: "accounting", Source: SourceLocal, Reason: "spool-full"},
		{Allowed: true, Method: "eap-tls", Source: SourceExternal, Route: "eduroam-visitor", Pool: "eduroam-national"},
		{Allowed: false, Method: "pap", Source: SourceRoute, Reason: "route-reject", Route: "eduroam-unknown-realm"},
	} {
		s.Count(ev)
	}
	got := map[[3]string]uint64{}
	for _, a := range s.Access() {
		got[[3]string{a.Code, a.Method, a.Decider.String()}] = a.Count
	}
	if len(got) != len(decisionMethods)*2*int(deciders) {
		t.Errorf("%d access series, want every combination", len(got))
	}
	for k, want := range map[[3]string]uint64{
		{"accept", "mab", "cloud"}: 1, {"reject", "pap", "cloud"}: 1, {"accept", "mab", "cache"}: 1,
		{"accept", "mab", "default"}: 1, {"reject", "mab", "default"}: 1, {"reject", "eap-tls", "policy"}: 1,
		{"reject", "chap", "policy"}: 1, {"accept", "other", "cloud"}: 0,
		{"accept", "eap-tls", "external"}: 1, {"reject", "pap", "route"}: 1, {"accept", "eap-tls", "cloud"}: 0,
	} {
		if got[k] != want {
			t.Errorf("%v = %d, want %d", k, got[k], want)
		}
	}
	var sum uint64
	for _, v := range got {
		sum += v
	}
	if sum != 9 {
		t.Errorf("%d access decisions, want 9: accounting and unanswered requests are not access decisions", sum)
	}
	local := s.Local()
	if len(local) != 6 || local[0] != (LocalCount{Method: "chap", Reason: "unsupported-method", Count: 1}) ||
		local[5] != (LocalCount{Method: "pap", Reason: ReasonPasswordNoAnswer, Count: 1}) {
		t.Errorf("local: %+v", local)
	}
	if a := s.Accounting(); a["spooled"] != 1 || a["spool-full"] != 1 || len(a) != 2 {
		t.Errorf("accounting: %v", a)
	}
}

// TestDecisionStatsConcurrent: counts from many goroutines are exact (run with -race).
func TestDecisionStatsConcurrent(t *testing.T) {
	s := NewDecisionStats()
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				reason := "cache-hit"
				if (i+w)%2 == 0 {
					reason = "default-vlan"
				}
				s.Count(Event{Allowed: true, Method: "mab", Source: SourceLocal, Reason: reason})
			}
		}()
	}
	wg.Wait()
	var n uint64
	for _, l := range s.Local() {
		n += l.Count
	}
	if n != workers*each {
		t.Fatalf("%d counted, want %d", n, workers*each)
	}
}

func BenchmarkDecisionStatsCount(b *testing.B) {
	s := NewDecisionStats()
	ev := Event{Allowed: true, Method: "mab", Source: SourceLocal, Reason: "cache-hit"}
	b.ReportAllocs()
	for b.Loop() {
		s.Count(ev)
	}
}
