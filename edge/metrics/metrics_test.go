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
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func snapshot() Snapshot {
	return Snapshot{
		Mode:        "down",
		Transitions: map[string]uint64{"down": 2, "recovering": 1, "up": 1},
		Requests:    Requests{Received: 100, Forwarded: 90, UpstreamAnswered: 80, Local: 10, NoUpstream: 6, Retried: 3, StatusServer: 4, DuplicateEvicted: 5},
		Dropped:     map[string]uint64{"bad-authenticator": 3, "malformed": 1},
		AnswerTime: map[string]Histogram{
			"access": {Bounds: []float64{0.001, 0.01}, Counts: []uint64{5, 3, 2}, Sum: 2.5},
		},
		Decisions: []Decision{
			{Code: "accept", Method: "mab", Decider: "cloud", Count: 7},
			{Code: "reject", Method: "pap", Decider: "policy", Count: 2},
		},
		LocalDecisions:  []LocalDecision{{Method: "mab", Reason: "cache-hit", Code: "accept", Count: 4}},
		LocalAccounting: map[string]uint64{"spooled": 6},
		NAS: []NAS{
			{Name: "sw1", Requests: 60, Responses: 55, BadAuthenticator: 3, Duplicates: 2, LastSeen: t0},
			{Name: "radsec:wlc", Requests: 40, Responses: 40, MissingMA: 1},
		},
		Upstreams: []Upstream{
			{Name: "cloud-a", State: "down", RTT: 12 * time.Millisecond, Replies: 70, Downs: 4},
			{Name: "cloud-b", State: "up", RTT: 30 * time.Millisecond, Replies: 10, Connections: 2, Inflight: 5},
		},
		Cache:         Cache{Entries: 1234, Drops: 5},
		Spool:         Spool{Depth: 17, Refused: 1, Quarantined: 2},
		EAPTLS:        EAPTLS{Conversations: 1, Started: 9, Accepted: 6, Rejected: 2, Expired: 1},
		EventsDropped: 8,
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
		Build: BuildInfo{Version: "1.0.0", Commit: "abc"},
	})
	mfs := scrape(t, s)
	tests := []struct {
		name, labels string
		want         float64
	}{
		{"mxedge_build_info", "version=1.0.0,commit=abc,go_version=" + runtime.Version(), 1},
		{"mxedge_mode", "mode=down", 1},
		{"mxedge_mode", "mode=up", 0},
		{"mxedge_mode_transitions_total", "to=down", 2},
		{"mxedge_mode_transitions_total", "to=suspect", 0},
		{"mxedge_requests_received_total", "", 100},
		{"mxedge_requests_forwarded_total", "", 90},
		{"mxedge_requests_upstream_answered_total", "", 80},
		{"mxedge_requests_local_total", "", 10},
		{"mxedge_requests_no_upstream_total", "", 6},
		{"mxedge_requests_retried_total", "", 3},
		{"mxedge_status_server_requests_total", "", 4},
		{"mxedge_duplicate_cache_evictions_total", "", 5},
		{"mxedge_dropped_packets_total", "reason=bad-authenticator", 3},
		{"mxedge_dropped_packets_total", "reason=malformed", 1},
		{"mxedge_answer_duration_seconds", "request=access", 10},
		{"mxedge_access_decisions_total", "code=accept,method=mab,decider=cloud", 7},
		{"mxedge_access_decisions_total", "code=reject,method=pap,decider=policy", 2},
		{"mxedge_local_decisions_total", "method=mab,reason=cache-hit,code=accept", 4},
		{"mxedge_local_accounting_requests_total", "result=spooled", 6},
		{"mxedge_nas_requests_total", "nas=sw1", 60},
		{"mxedge_nas_responses_total", "nas=radsec:wlc", 40},
		{"mxedge_nas_retransmissions_total", "nas=sw1", 2},
		{"mxedge_nas_errors_total", "nas=sw1,reason=bad-authenticator", 3},
		{"mxedge_nas_errors_total", "nas=radsec:wlc,reason=missing-message-authenticator", 1},
		{"mxedge_nas_last_seen_timestamp_seconds", "nas=sw1", float64(t0.Unix())},
		{"mxedge_upstream_up", "upstream=cloud-a", 0},
		{"mxedge_upstream_up", "upstream=cloud-b", 1},
		{"mxedge_upstream_state", "upstream=cloud-a,state=down", 1},
		{"mxedge_upstream_smoothed_rtt_seconds", "upstream=cloud-a", 0.012},
		{"mxedge_upstream_replies_total", "upstream=cloud-a", 70},
		{"mxedge_upstream_down_transitions_total", "upstream=cloud-a", 4},
		{"mxedge_upstream_connections", "upstream=cloud-b", 2},
		{"mxedge_upstream_requests_in_flight", "upstream=cloud-b", 5},
		{"mxedge_cache_entries", "", 1234},
		{"mxedge_cache_write_drops_total", "", 5},
		{"mxedge_spool_depth", "", 17},
		{"mxedge_spool_refused_total", "", 1},
		{"mxedge_spool_quarantined", "", 2},
		{"mxedge_eaptls_conversations", "", 1},
		{"mxedge_eaptls_conversations_started_total", "", 9},
		{"mxedge_eaptls_conversations_ended_total", "outcome=accept", 6},
		{"mxedge_eaptls_conversations_ended_total", "outcome=reject", 2},
		{"mxedge_eaptls_conversations_ended_total", "outcome=expired", 1},
		{"mxedge_certificate_expiry_timestamp_seconds", "cert=upstream-client", float64(t0.Add(36 * time.Hour).Unix())},
		{"mxedge_certificate_expiry_timestamp_seconds", "cert=old", float64(t0.Add(-48 * time.Hour).Unix())},
		{"mxedge_events_dropped_total", "", 8},
	}
	for _, tc := range tests {
		t.Run(tc.name+"{"+tc.labels+"}", func(t *testing.T) {
			if got := value(t, mfs, tc.name, tc.labels); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	// The answer-time histogram is cumulative: 5 below 1 ms, 8 below 10 ms, 10 in all.
	for _, m := range mfs["mxedge_answer_duration_seconds"].GetMetric() {
		h := m.GetHistogram()
		want := map[float64]uint64{0.001: 5, 0.01: 8}
		for _, b := range h.GetBucket() {
			if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
			}
		}
		if h.GetSampleSum() != 2.5 {
			t.Errorf("sum %v", h.GetSampleSum())
		}
	}
	for _, f := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := mfs[f]; !ok {
			t.Errorf("no %s: the Go and process collectors are not registered", f)
		}
	}
}

// TestBuildInfoDefaults: without a stamped version and commit, build_info still has both labels.
func TestBuildInfoDefaults(t *testing.T) {
	mfs := scrape(t, startExporter(t, Options{}))
	m := mfs["mxedge_build_info"].GetMetric()
	if len(m) != 1 || m[0].GetGauge().GetValue() != 1 {
		t.Fatalf("build_info: %v", m)
	}
	for _, l := range m[0].GetLabel() {
		if l.GetValue() == "" {
			t.Errorf("label %s empty", l.GetName())
		}
	}
}

func TestScrapeRoundTrip(t *testing.T) {
	s := startExporter(t, Options{})
	for _, d := range []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second} {
		s.ObserveUpstreamRoundTrip("cloud-a", d)
	}
	s.ObserveUpstreamRoundTrip("cloud-b", time.Millisecond)
	mfs := scrape(t, s)
	if got := value(t, mfs, "mxedge_upstream_round_trip_seconds", "upstream=cloud-a"); got != 3 {
		t.Errorf("cloud-a: %v observations", got)
	}
	if got := value(t, mfs, "mxedge_upstream_round_trip_seconds", "upstream=cloud-b"); got != 1 {
		t.Errorf("cloud-b: %v observations", got)
	}
	// The histogram's buckets: 3 ms falls in le=0.005, 40 ms in le=0.05, 2 s in le=2.5.
	for _, m := range mfs["mxedge_upstream_round_trip_seconds"].GetMetric() {
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

func BenchmarkObserveUpstreamRoundTrip(b *testing.B) {
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.ObserveUpstreamRoundTrip("cloud-a", 12*time.Millisecond)
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
