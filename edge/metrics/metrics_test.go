package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"mxedge/edge/events"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func snapshot() Snapshot {
	return Snapshot{
		Mode:        "down",
		Transitions: map[string]uint64{"down": 2, "recovering": 1, "up": 1},
		Received:    100, Forwarded: 90, Answered: 80, Fallback: 10,
		Dropped: map[string]uint64{"bad-authenticator": 3, "malformed": 1},
		NAS: []NAS{
			{Name: "sw1", Requests: 60, Responses: 55, BadAuthenticator: 3, Duplicates: 2},
			{Name: "radsec:wlc", Requests: 40, Responses: 40, MissingMA: 1},
		},
		Upstreams: []Upstream{
			{Name: "cloud-a", State: "down", RTT: 12 * time.Millisecond, Answered: 70, Failures: 4},
			{Name: "cloud-b", State: "up", RTT: 30 * time.Millisecond, Answered: 10},
		},
		Cache:      Cache{Entries: 1234, Drops: 5},
		SpoolDepth: 17,
		EAPTLS:     EAPTLS{Conversations: 1, Started: 9, Accepted: 6, Rejected: 2},
	}
}

// startExporter runs a Server on 127.0.0.1:0 and stops it (checking goroutines) at cleanup.
func startExporter(t *testing.T, o Options) *Server {
	t.Helper()
	base := runtime.NumGoroutine()
	o.Addr = "127.0.0.1:0"
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			t.Errorf("goroutines %d > baseline %d", n, base)
		}
	})
	return s
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return mfs
}

// value finds the sample of family name whose labels include want ("k=v,k=v").
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name, want string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("%s{%s} not found", name, want)
	return 0
}

func hasLabels(m *dto.Metric, want string) bool {
	if want == "" {
		return true
	}
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for _, kv := range strings.Split(want, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if have[k] != v {
			return false
		}
	}
	return true
}

func TestScrapeSnapshot(t *testing.T) {
	s := startExporter(t, Options{
		Snapshot: snapshot,
		Certificates: func() []Certificate {
			return []Certificate{{"upstream-client", t0.Add(36 * time.Hour)}, {"old", t0.Add(-48 * time.Hour)}}
		},
		Now: func() time.Time { return t0 },
	})
	mfs := scrape(t, s)
	tests := []struct {
		name, labels string
		want         float64
	}{
		{"mxedge_mode", "mode=down", 1},
		{"mxedge_mode", "mode=up", 0},
		{"mxedge_mode_transitions_total", "to=down", 2},
		{"mxedge_mode_transitions_total", "to=suspect", 0},
		{"mxedge_requests_received_total", "", 100},
		{"mxedge_requests_forwarded_total", "", 90},
		{"mxedge_requests_upstream_answered_total", "", 80},
		{"mxedge_requests_local_total", "", 10},
		{"mxedge_dropped_packets_total", "reason=bad-authenticator", 3},
		{"mxedge_dropped_packets_total", "reason=malformed", 1},
		{"mxedge_nas_requests_total", "nas=sw1", 60},
		{"mxedge_nas_responses_total", "nas=radsec:wlc", 40},
		{"mxedge_nas_errors_total", "nas=sw1,reason=bad-authenticator", 3},
		{"mxedge_nas_errors_total", "nas=sw1,reason=duplicate", 2},
		{"mxedge_nas_errors_total", "nas=radsec:wlc,reason=missing-message-authenticator", 1},
		{"mxedge_upstream_up", "upstream=cloud-a", 0},
		{"mxedge_upstream_up", "upstream=cloud-b", 1},
		{"mxedge_upstream_state", "upstream=cloud-a,state=down", 1},
		{"mxedge_upstream_rtt_seconds", "upstream=cloud-a", 0.012},
		{"mxedge_upstream_answered_total", "upstream=cloud-a", 70},
		{"mxedge_upstream_failures_total", "upstream=cloud-a", 4},
		{"mxedge_cache_entries", "", 1234},
		{"mxedge_cache_write_drops_total", "", 5},
		{"mxedge_spool_depth", "", 17},
		{"mxedge_eaptls_conversations", "", 1},
		{"mxedge_eaptls_handshakes_total", "", 9},
		{"mxedge_eaptls_results_total", "outcome=accept", 6},
		{"mxedge_eaptls_results_total", "outcome=reject", 2},
		{"mxedge_certificate_expiry_days", "cert=upstream-client", 1.5},
		{"mxedge_certificate_expiry_days", "cert=old", -2},
		{"mxedge_cache_lookups_total", "result=hit", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name+"{"+tc.labels+"}", func(t *testing.T) {
			if got := value(t, mfs, tc.name, tc.labels); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScrapeEventsAndLatency(t *testing.T) {
	bus := events.New(events.Options{})
	s := startExporter(t, Options{Events: bus})
	// Run subscribes asynchronously: wait for it before publishing.
	deadline := time.Now().Add(2 * time.Second)
	for bus.Subscribers() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for _, ev := range []events.Event{
		{Allowed: true, Method: "mab", NAS: "sw1", Source: events.SourceUpstream, Upstream: "cloud-a"},
		{Allowed: false, Method: "pap", NAS: "sw1", Source: events.SourceUpstream, Upstream: "cloud-a"},
		{Allowed: true, Method: "mab", NAS: "sw1", Source: events.SourceLocal, Reason: "cache-hit"},
		{Allowed: true, Method: "mab", NAS: "sw1", Source: events.SourceLocal, Reason: "default-vlan"},
		{Allowed: false, Method: "eap-tls", NAS: "sw2", Source: events.SourceLocal, Reason: "cert-expired"},
		{Allowed: false, Method: "eap-tls", NAS: "sw2", Source: events.SourceLocal, Reason: "failmode-closed"},
	} {
		bus.Publish(ev)
	}
	for _, d := range []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second} {
		s.ObserveUpstreamLatency("cloud-a", d)
	}
	s.ObserveUpstreamLatency("cloud-b", time.Millisecond)
	// Counting happens on the exporter's goroutine: poll until the last event is counted.
	var mfs map[string]*dto.MetricFamily
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mfs = scrape(t, s)
		if f, ok := mfs["mxedge_eaptls_failures_total"]; ok && len(f.GetMetric()) == 2 {
			break
		}
	}
	tests := []struct {
		name, labels string
		want         float64
	}{
		{"mxedge_decisions_total", "nas=sw1,source=upstream,method=mab,outcome=accept", 1},
		{"mxedge_decisions_total", "nas=sw1,source=upstream,method=pap,outcome=reject", 1},
		{"mxedge_decisions_total", "nas=sw1,source=local,method=mab,outcome=accept", 2},
		{"mxedge_local_decisions_total", "method=mab,reason=cache-hit,outcome=accept", 1},
		{"mxedge_local_decisions_total", "method=eap-tls,reason=cert-expired,outcome=reject", 1},
		{"mxedge_cache_lookups_total", "result=hit", 1},
		{"mxedge_cache_lookups_total", "result=miss", 2},
		{"mxedge_eaptls_failures_total", "reason=cert-expired", 1},
		{"mxedge_eaptls_failures_total", "reason=failmode-closed", 1},
		{"mxedge_events_dropped_total", "", 0},
		{"mxedge_upstream_latency_seconds", "upstream=cloud-a", 3},
		{"mxedge_upstream_latency_seconds", "upstream=cloud-b", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name+"{"+tc.labels+"}", func(t *testing.T) {
			if got := value(t, mfs, tc.name, tc.labels); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	// The histogram's buckets: 3 ms falls in le=0.005, 40 ms in le=0.05, 2 s in le=2.5.
	for _, m := range mfs["mxedge_upstream_latency_seconds"].GetMetric() {
		if !hasLabels(m, "upstream=cloud-a") {
			continue
		}
		want := map[float64]uint64{0.005: 1, 0.05: 2, 2.5: 3, 10: 3}
		for _, b := range m.GetHistogram().GetBucket() {
			if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"", true}, {"127.0.0.1:9812", true}, {"[::1]:9812", true}, {"9812", false}, {"localhost", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			err := Options{Addr: tc.addr}.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%q) = %v", tc.addr, err)
			}
		})
	}
}

func TestListenInUse(t *testing.T) {
	a := startExporter(t, Options{})
	b, err := New(Options{Addr: a.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("Run on a bound address succeeded")
	}
}

func BenchmarkObserveUpstreamLatency(b *testing.B) {
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.ObserveUpstreamLatency("cloud-a", 12*time.Millisecond)
	}
}

func BenchmarkScrape(b *testing.B) {
	s, err := New(Options{Snapshot: snapshot})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
