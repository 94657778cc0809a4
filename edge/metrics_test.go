package edge_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"mxedge/edge"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
)

// promtool is Prometheus's own checker (Debian package prometheus); the metrics tests need it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is required and missing (install the Debian package \"prometheus\": "+
			"apt-get install -y --no-install-recommends prometheus, or run make test-deps): %v", err)
	}
	return p
}

// metricsEdge is an edge serving /metrics in front of a Go upstream, with traffic on every path
// that makes series: cloud accepts and rejects, accounting, then, with the upstream gone, local
// decisions.
type metricsEdge struct {
	up   *radsectest.Responder
	e    *edge.Edge
	auth string
	acct string
	url  string
}

func startMetricsEdge(t *testing.T) *metricsEdge {
	t.Helper()
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	cfg := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), lifecycleDoc(dir, lab, up, "s", ""))
	e, err := edge.New(cfg, edge.Options{MetricsAddr: "127.0.0.1:0", Version: "1.2.3-test", Commit: "abc1234"})
	if err != nil {
		t.Fatal(err)
	}
	runEdge(t, e)
	m := &metricsEdge{up: up, e: e, auth: e.AuthAddrs()[0].String(), url: fmt.Sprintf("http://%s/metrics", e.Metrics().Addr())}
	for _, a := range e.Status().Listeners {
		if s, ok := strings.CutPrefix(a, "radius-acct udp "); ok {
			m.acct = s
		}
	}
	return m
}

// mab is a MAB Access-Request: User-Name is the MAC in Calling-Station-Id.
func mab(t *testing.T, secret, mac string, id uint8) packet.Packet {
	t.Helper()
	auth := make([]byte, 16)
	auth[0], auth[1] = id, byte(time.Now().UnixNano())
	b := packet.New(nil, packet.CodeAccessRequest, id, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, mac)
	b.AddString(packet.AttrCallingStationID, mac)
	p, err := b.Finish([]byte(secret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// accountingStart is an Accounting-Request (RFC 2866) Start.
func accountingStart(t *testing.T, secret string, id uint8) packet.Packet {
	t.Helper()
	b := packet.New(nil, packet.CodeAccountingRequest, id, make([]byte, 16))
	b.AddUint32(packet.AttrAcctStatusType, 1)
	b.AddString(packet.AttrAcctSessionID, fmt.Sprintf("s%d", id))
	b.AddString(packet.AttrUserName, "acct-user")
	p, err := b.Finish([]byte(secret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (m *metricsEdge) scrape(t *testing.T) []byte {
	t.Helper()
	resp, err := http.Get(m.url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v\n%s", m.url, resp.Status, err, b)
	}
	return b
}

// TestMetricsPromtool: a real scrape of a running edge passes `promtool check metrics` without a
// single complaint (naming, units, _total suffixes, help text).
func TestMetricsPromtool(t *testing.T) {
	pt := promtool(t)
	m := startMetricsEdge(t)
	if r := exchangeUDP(t, "127.0.0.1:0", m.auth, request(t, "s", "alice", 1), 2*time.Second); r == nil {
		t.Fatal("no answer")
	}
	scrape := m.scrape(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pt, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{
		`mxedge_build_info{commit="abc1234",go_version="go`,
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !bytes.Contains(scrape, []byte(want)) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// families parses a scrape with Prometheus's text parser.
func families(t *testing.T, scrape []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(scrape))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// sum adds up the counter or gauge samples of family name whose labels include want.
func sum(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var n float64
	for _, m := range mfs[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && have[k] == v
		}
		if match {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return n
}

// flood sends every request at once, each from its own socket, and counts the answers by code.
func flood(t *testing.T, to string, reqs []packet.Packet) map[packet.Code]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[packet.Code]int{}
	var wg sync.WaitGroup
	for _, p := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := exchangeUDP(t, "127.0.0.1:0", to, p, 5*time.Second); r != nil {
				mu.Lock()
				codes[packet.Packet(r).Code()]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return codes
}

// TestMetricsDecisionsExact: the decision counters equal the answers the NAS received, by who
// decided, under a burst and with an event subscriber that never reads (the bus drops its events),
// and accounting is never counted as an access decision.
func TestMetricsDecisionsExact(t *testing.T) {
	m := startMetricsEdge(t)
	stalled, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = m.e.Events().Subscribe(stalled) // never read

	const n = 300
	var cloud []packet.Packet
	for i := range n {
		cloud = append(cloud, mab(t, "s", fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), uint8(i)))
	}
	for i := range 20 {
		cloud = append(cloud, request(t, "s", "reject", uint8(i)))
	}
	codes := flood(t, m.auth, cloud)
	if codes[packet.CodeAccessAccept] != n || codes[packet.CodeAccessReject] != 20 {
		t.Fatalf("cloud answers: %v", codes)
	}
	if r := exchangeUDP(t, "127.0.0.1:0", m.acct, accountingStart(t, "s", 1), 2*time.Second); r == nil {
		t.Fatal("accounting not answered")
	}

	// The cloud goes away: the learned MACs are answered from the cache, new ones by default.
	m.up.Close()
	deadline := time.Now().Add(10 * time.Second)
	for m.e.Status().Mode != "down" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if mode := m.e.Status().Mode; mode != "down" {
		t.Fatalf("mode %s after the upstream closed", mode)
	}
	// The cache learns asynchronously: wait until the last learned MAC is there.
	for time.Now().Before(deadline) {
		if _, ok, _ := m.e.Cache().Lookup("", fmt.Sprintf("02:00:00:00:%02x:%02x", (n-1)/256, (n-1)%256)); ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var local []packet.Packet
	for i := range n {
		local = append(local, mab(t, "s", fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), uint8(i)))
		local = append(local, mab(t, "s", fmt.Sprintf("02:00:00:01:%02x:%02x", i/256, i%256), uint8(i)))
	}
	if codes := flood(t, m.auth, local); codes[packet.CodeAccessAccept] != 2*n {
		t.Fatalf("local answers: %v", codes)
	}

	mfs := families(t, m.scrape(t))
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"decider": "cloud", "code": "accept", "method": "mab"}, n},
		{map[string]string{"decider": "cloud", "code": "reject"}, 20},
		{map[string]string{"decider": "cache", "code": "accept", "method": "mab"}, n},
		{map[string]string{"decider": "default", "code": "accept", "method": "mab"}, n},
		{map[string]string{}, 3*n + 20},
	} {
		if got := sum(mfs, "mxedge_access_decisions_total", tc.labels); got != tc.want {
			t.Errorf("mxedge_access_decisions_total%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got := sum(mfs, "mxedge_local_decisions_total", map[string]string{"reason": "cache-hit"}); got != n {
		t.Errorf("local cache-hit decisions %v, want %d", got, n)
	}
	if got := sum(mfs, "mxedge_answer_duration_seconds", map[string]string{"request": "access"}); got != 3*n+20 {
		t.Errorf("answer-time observations %v, want %d", got, 3*n+20)
	}
	if got := sum(mfs, "mxedge_answer_duration_seconds", map[string]string{"request": "accounting"}); got != 1 {
		t.Errorf("accounting answer-time observations %v, want 1", got)
	}
	// Accounting reaches the cloud through the spool's ordered path, not the router's observer.
	if got := sum(mfs, "mxedge_upstream_round_trip_seconds", nil); got != n+20 {
		t.Errorf("upstream round trips %v, want %d", got, n+20)
	}
}
