package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"mxedge/edge"
	"mxedge/pki"
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
	// Local EAP-TLS with a CRL file, so that the EAP-TLS and revocation series exist.
	der, err := lab.CA.CreateCRL(pki.CRLOptions{Number: 1})
	if err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(dir, "ca.crl")
	if err := os.WriteFile(crl, pki.EncodeCRL(der), 0o600); err != nil {
		t.Fatal(err)
	}
	// A reject route, so that the route series exist.
	// A RadSec listener with a connected peer, so that the per-connection series exist also
	// after the upstream is gone; an identity sink, so that its series exist (a syslog receiver
	// nobody runs: it goes down).
	doc := lifecycleDoc(dir, lab, up, "s", "") + fmt.Sprintf(`survivability:
  eap_tls: {certificate: %s, key: %s, ca: %s, crl_files: [%s]}
radsec:
  listen: ["127.0.0.1:0"]
  tls: {certificate: %s, key: %s, ca: %s}
  peers: [{name: ap, address: 127.0.0.1, cert_names: ["*"]}]
identity:
  sinks: [{name: siem, type: syslog, transport: udp, address: "127.0.0.1:9"}]
routes:
  - {name: blocked, realms: [blocked.example], reject: true}
`, lab.ServerCert, lab.ServerKey, lab.CAFile, crl, lab.ServerCert, lab.ServerKey, lab.CAFile)
	cfg := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), doc)
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
		if s, ok := strings.CutPrefix(a, "radsec tcp "); ok {
			c, err := tls.Dial("tcp", s, lab.ClientTLS())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	return m
}

// mab is a MAB Access-Request as NASes send it: User-Name and User-Password are the MAC in
// Calling-Station-Id (the password is what makes it MAB, docs/survivability.md).
func mab(t *testing.T, secret, mac string, id uint8) packet.Packet {
	t.Helper()
	auth := make([]byte, 16)
	auth[0], auth[1] = id, byte(time.Now().UnixNano())
	b := packet.New(nil, packet.CodeAccessRequest, id, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, mac)
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(mac), []byte(secret), auth))
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

// fullScrape scrapes an edge that has been through every path that makes series: cloud accepts
// and rejects, accounting, then, with the upstream gone, local MAB and spooled accounting.
func fullScrape(t *testing.T) []byte {
	t.Helper()
	m := startMetricsEdge(t)
	for i, p := range []packet.Packet{request(t, "s", "alice", 1), request(t, "s", "reject", 2), mab(t, "s", "02:00:00:00:00:01", 3)} {
		if r := exchangeUDP(t, "127.0.0.1:0", m.auth, p, 2*time.Second); r == nil {
			t.Fatalf("request %d not answered", i)
		}
	}
	if r := exchangeUDP(t, "127.0.0.1:0", m.acct, accountingStart(t, "s", 1), 2*time.Second); r == nil {
		t.Fatal("accounting not answered")
	}
	m.down(t)
	if r := exchangeUDP(t, "127.0.0.1:0", m.auth, mab(t, "s", "02:00:00:00:00:02", 4), 2*time.Second); r == nil {
		t.Fatal("local MAB not answered")
	}
	if r := exchangeUDP(t, "127.0.0.1:0", m.acct, accountingStart(t, "s", 2), 2*time.Second); r == nil {
		t.Fatal("local accounting not answered")
	}
	// The session table commits every 100 ms (edge/sessions.go): wait for the sessions above.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st := m.e.Status().Sessions; st != nil && st.Live >= 3 {
			break
		}
	}
	return m.scrape(t)
}

// down closes the upstream and waits for the edge to answer locally.
func (m *metricsEdge) down(t *testing.T) {
	t.Helper()
	m.up.Close()
	deadline := time.Now().Add(10 * time.Second)
	for m.e.Status().Mode != "down" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if mode := m.e.Status().Mode; mode != "down" {
		t.Fatalf("mode %s after the upstream closed", mode)
	}
}

// TestMetricsPromtool: a real scrape of a running edge passes `promtool check metrics` without a
// single complaint (naming, units, _total suffixes, help text).
func TestMetricsPromtool(t *testing.T) {
	pt := promtool(t)
	scrape := fullScrape(t)
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
	m.down(t)
	// The cache learns asynchronously: wait until the last learned MAC is there.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
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

// The shipped dashboard and alert rules.
var (
	rulesFile     = filepath.Join("..", "examples", "prometheus", "mxedge-rules.yml")
	dashboardFile = filepath.Join("..", "examples", "grafana", "mxedge.json")
)

// TestMetricsRulesPromtool: the shipped alert rules pass `promtool check rules`.
func TestMetricsRulesPromtool(t *testing.T) {
	pt := promtool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pt, "check", "rules", rulesFile).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("SUCCESS")) {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
}

// PromQL pieces that hold no metric name: strings, label matchers, ranges, grouping label lists.
var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(?:\s*\()?`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: every identifier that is not
// a function call, a keyword, or inside a string, label matcher, range or grouping clause.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, id := range promIdent.FindAllString(e, -1) {
		if strings.HasSuffix(id, "(") || promKeywords[id] {
			continue
		}
		out = append(out, id)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x="}{"}[5m]))) > 0.5 and on (instance) b - time() < 14 * 86400 or c:rec`)
	if want := []string{"a_bucket", "b", "c:rec"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// exportedName reports whether name is in the scrape: a family, a histogram's or summary's
// _bucket/_sum/_count series, or up (which Prometheus adds to every target).
func exportedName(mfs map[string]*dto.MetricFamily, name string) bool {
	if _, ok := mfs[name]; ok || name == "up" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if mf, ok := mfs[base]; ok && (mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY) {
			return suffix != "_bucket" || mf.GetType() == dto.MetricType_HISTOGRAM
		}
	}
	return false
}

// shippedExpressions returns every PromQL expression in the alert rules and the dashboard, by
// where it is.
func shippedExpressions(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct{ Alert, Record, Expr string }
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs[rulesFile+": "+r.Alert+r.Record] = r.Expr
		}
	}
	raw, err = os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ RefID, Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query any
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	labelValues := regexp.MustCompile(`^label_values\(([A-Za-z_:][A-Za-z0-9_:]*),\s*\w+\)$`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs[dashboardFile+": "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue // the data source variable
		}
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", dashboardFile, v.Name, s)
			continue
		}
		exprs[dashboardFile+": variable "+v.Name] = m[1]
	}
	return exprs
}

// TestMetricsShippedExpressionsExist: every metric the alert rules and the dashboard use is in a
// real scrape of a running edge.
func TestMetricsShippedExpressionsExist(t *testing.T) {
	mfs := families(t, fullScrape(t))
	exprs := shippedExpressions(t)
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found in the rules and the dashboard", len(exprs))
	}
	for where, expr := range exprs {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			if !exportedName(mfs, n) {
				t.Errorf("%s: %s is not in the scrape (%q)", where, n, expr)
			}
		}
	}
}

// documentedMetric is one row of docs/metrics.md's table.
type documentedMetric struct {
	typ    string
	labels []string
}

// metricsDoc reads the metric table of docs/metrics.md: | `name` | type | `label`, … | meaning |.
func metricsDoc(t *testing.T) map[string]documentedMetric {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\|\\s*`([a-z_:*]+)`\\s*\\|\\s*([a-z]*)\\s*\\|([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	doc := map[string]documentedMetric{}
	for _, line := range strings.Split(string(raw), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d := documentedMetric{typ: m[2]}
		for _, l := range label.FindAllStringSubmatch(m[3], -1) {
			d.labels = append(d.labels, l[1])
		}
		slices.Sort(d.labels)
		doc[m[1]] = d
	}
	return doc
}

// TestMetricsDocumented: docs/metrics.md and a real scrape agree: every mxedge metric exported is
// documented with its type and labels, every documented one is exported, and the Go and process
// collectors' families are covered by their rows.
func TestMetricsDocumented(t *testing.T) {
	doc := metricsDoc(t)
	mfs := families(t, fullScrape(t))
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "mxedge_") {
			prefix, _, _ := strings.Cut(name, "_")
			if _, ok := doc[prefix+"_*"]; !ok {
				t.Errorf("%s is exported and neither it nor %s_* is in docs/metrics.md", name, prefix)
			}
			continue
		}
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s is exported and not documented in docs/metrics.md", name)
			continue
		}
		if typ := strings.ToLower(mf.GetType().String()); d.typ != typ {
			t.Errorf("%s: documented as %q, exported as %q", name, d.typ, typ)
		}
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		slices.Sort(labels)
		if !slices.Equal(labels, d.labels) {
			t.Errorf("%s: documented labels %v, exported %v", name, d.labels, labels)
		}
	}
	for name := range doc {
		if strings.HasSuffix(name, "_*") {
			continue
		}
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s is documented in docs/metrics.md and not exported", name)
		}
	}
}
