package survival

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/bench"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/survivability/eaptls"
)

// nasSecret is the load generator's NAS secret at every server.
const nasSecret = "survival-bench-secret"

// Default VLANs of the edge for clients not in the cache.
const (
	mabDefaultVLAN   = "41"
	dot1xDefaultVLAN = "51"
)

// Environment knobs; every one has a default that keeps each benchmark under about 2 minutes on
// the 2-core lab machine.
const (
	ratesEnv     = "MXEDGE_SURVIVAL_RATES"      // MAB offered rates, req/s
	mabDurEnv    = "MXEDGE_SURVIVAL_MAB_WINDOW" // sending window per rate
	cacheSizeEnv = "MXEDGE_SURVIVAL_CACHE"      // cached MAB clients
	eapDurEnv    = "MXEDGE_SURVIVAL_EAP_WINDOW" // window per server and TLS version
	eapConcEnv   = "MXEDGE_SURVIVAL_EAP_CONC"   // concurrent EAP-TLS conversations
	logLevelEnv  = "MXEDGE_SURVIVAL_LOG_LEVEL"  // mxedge's log level
	frThreadsEnv = "MXEDGE_SURVIVAL_FR_THREADS" // FreeRADIUS thread pool size
	socketsEnv   = "MXEDGE_SURVIVAL_SOCKETS"    // MAB generator sockets
)

func envInts(tb testing.TB, name string, def []int, lo, hi int) []int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			tb.Fatalf("%s=%q: want comma-separated integers %d..%d", name, s, lo, hi)
		}
		out = append(out, n)
	}
	return out
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > time.Minute {
		tb.Fatalf("%s=%q: want a duration between 0 and 1m", name, s)
	}
	return d
}

// mxedgeBin returns $MXEDGE_BIN, else ../../bin/mxedge from `make build`, else builds one.
func mxedgeBin(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv(bench.MxedgeBinEnv)
	if p == "" {
		if st, err := os.Stat("../../bin/mxedge"); err == nil && st.Mode()&0o111 != 0 {
			p = "../../bin/mxedge"
		}
	}
	if p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			tb.Fatal(err)
		}
		if st, err := os.Stat(abs); err != nil || st.Mode()&0o111 == 0 {
			tb.Fatalf("%s=%q is not an executable file (run `make build`)", bench.MxedgeBinEnv, p)
		}
		return abs
	}
	bin, err := bench.BuildMxedge(tb.Context(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// startEdge starts mxedge in survivability mode and waits until it answers MAB locally.
func startEdge(tb testing.TB, lab *pkitest.Lab, cached int, eap bool, env ...string) (*bench.Process, string) {
	tb.Helper()
	p, addr, _ := startEdgeWith(tb, lab, cached, eap, edgeVariant{}, env...)
	return p, addr
}

// startEdgeWith is startEdge with an edgeVariant (listen.sockets and listen.split_batch, 0: their
// defaults; a binary and a log level, "": the defaults; the session table off) and a metrics
// endpoint, whose address it returns third.
func startEdgeWith(tb testing.TB, lab *pkitest.Lab, cached int, eap bool, v edgeVariant, env ...string) (*bench.Process, string, string) {
	tb.Helper()
	dir := tb.TempDir()
	auth, err1 := FreeUDP()
	acct, err2 := FreeUDP()
	up, err3 := ClosedPort()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	if v.gogc > 0 {
		env = append(env[:len(env):len(env)], fmt.Sprintf("GOGC=%d", v.gogc))
	}
	o := EdgeOptions{
		Bin: cmp.Or(v.bin, mxedgeBin(tb)), Dir: dir, Auth: auth, Acct: acct, Secret: nasSecret,
		Upstream: up, Cert: lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile,
		DefaultMABVLAN: mabDefaultVLAN, DefaultDot1XVLAN: dot1xDefaultVLAN,
		LogLevel: cmp.Or(v.log, os.Getenv(logLevelEnv)), Env: env, Sockets: v.sockets, SplitBatch: v.split,
		Metrics: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(tb)),
	}
	if v.noSessions {
		o.Extra += "sessions:\n  enabled: false\n"
	}
	if v.dupSize > 0 {
		o.Extra += fmt.Sprintf("duplicate_cache_size: %d\n", v.dupSize)
	}
	if eap {
		o.EAPCert, o.EAPKey, o.EAPCA = lab.ServerCert, lab.ServerKey, lab.CAFile
	}
	if cached > 0 {
		t0 := time.Now()
		if err := FillCache(o.CachePath(), cached); err != nil {
			tb.Fatal(err)
		}
		tb.Logf("cache: %d MAB clients imported in %v", cached, time.Since(t0).Round(time.Millisecond))
	}
	// Ready once a MAB request is answered locally with the default VLAN.
	p, err := StartEdge(tb.Context(), o, func(addr string) error {
		vlan, err := ProbeMAB(addr, nasSecret, MAC(1, 0xfffffe))
		if err == nil && vlan != mabDefaultVLAN {
			return fmt.Errorf("answered with VLAN %q, want the default %q", vlan, mabDefaultVLAN)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return p, auth, o.Metrics
}

// BenchmarkLocalMAB: paced open-loop MAB at each offered rate against mxedge with no
// reachable upstream, half of the MACs in a 100k-entry cache, half unknown.
func BenchmarkLocalMAB(b *testing.B) {
	rates := envInts(b, ratesEnv, []int{10_000, 15_000, 20_000}, 100, 100_000)
	window := envDuration(b, mabDurEnv, 5*time.Second)
	cached := envInts(b, cacheSizeEnv, []int{100_000}, 1, 2_000_000)[0]
	sockets := envInts(b, socketsEnv, []int{128}, 1, 1024)[0]
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	edge, addr := startEdge(b, lab, cached, false)
	if vlan, err := ProbeMAB(addr, nasSecret, MAC(0, 7)); err != nil || vlan != CachedVLAN {
		b.Fatalf("cached client: VLAN %q, %v; want %q", vlan, err, CachedVLAN)
	}
	// Warm-up: the first seconds of a Go process (page faults, bbolt's mmap, GC sizing) are not
	// the steady state.
	if _, err := LoadMAB(b.Context(), MABLoadOptions{Addr: addr, Secret: nasSecret, Rate: rates[0] / 2,
		Duration: time.Second, Cached: cached, HitVLAN: CachedVLAN, MissVLAN: mabDefaultVLAN, Seed: 99}); err != nil {
		b.Fatal(err)
	}
	var rows []MABRow
	defer func() {
		if len(rows) > 0 {
			fmt.Printf("\nBenchmarkLocalMAB: mxedge in survivability mode (upstream refused), %d cached MACs, 50%% hits, "+
				"%v per rate, open loop; %d CPUs, load average %s\n", cached, window, runtime.NumCPU(), bench.LoadAvg())
			WriteMABTable(os.Stdout, rows)
		}
	}()
	for _, rate := range rates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			var last MABRow
			for b.Loop() {
				stopPerf := perfWindow(b, fmt.Sprintf("mxedge-mab-%d", rate), edge.Pid(), window)
				w, err := StartWindow(edge.CPUTime)
				if err != nil {
					b.Fatal(err)
				}
				res, err := LoadMAB(b.Context(), MABLoadOptions{
					Addr: addr, Secret: nasSecret, Rate: rate, Duration: window, Sockets: sockets,
					Cached: cached, HitVLAN: CachedVLAN, MissVLAN: mabDefaultVLAN, Seed: uint64(rate),
				})
				if err != nil {
					b.Fatal(err)
				}
				cpu, err := w.Stop()
				if err != nil {
					b.Fatal(err)
				}
				stopPerf()
				last = MABRow{Res: res, CPU: cpu}
				rows = append(rows, last)
				if res.Answered == 0 {
					b.Errorf("rate %d: no answers (%d invalid)\n%s", rate, res.Invalid, edge.LogTail(20))
				}
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(last.Res.AnswerRate(), "answers/s")
			b.ReportMetric(float64(last.Res.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(last.Res.P99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(last.Res.Lost), "lost")
			b.ReportMetric(float64(last.Res.Late), "late>2ms")
			b.ReportMetric(PerOp(last.CPU.Server, last.Res.Answered), "mxedge-µs/answer")
		})
	}
}

// eapClient is the supplicant configuration: the lab's ECDSA P-256 client certificate, one TLS
// version, an anonymous outer identity, and the key exchanges wpa_supplicant on OpenSSL 3.0 offers
// (X25519, P-256) — not Go's post-quantum hybrid, which only mxedge could accept, so both servers
// do the same work.
func eapClient(lab *pkitest.Lab, version uint16) *eaptls.ClientConfig {
	roots := x509.NewCertPool()
	roots.AddCert(lab.CA.Cert)
	return &eaptls.ClientConfig{
		Identity: "anonymous@example.test",
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{lab.Client.Cert.Raw}, PrivateKey: lab.Client.Key, Leaf: lab.Client.Cert,
		}},
		RootCAs:          roots,
		MinVersion:       version,
		MaxVersion:       version,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	}
}

// eapServer is one EAP-TLS server under test.
type eapServer struct {
	name string
	addr string
	cpu  CPUFunc
	pid  func() int
	logs func() string
	// only13 marks a diagnostic server measured with TLS 1.3 only.
	only13 bool
}

func startEAPServers(tb testing.TB, lab *pkitest.Lab, diag bool) []eapServer {
	tb.Helper()
	peertest.Require(tb, "freeradius")
	edge, mxAddr := startEdge(tb, lab, 0, true)
	frAddr, err := FreeUDP()
	if err != nil {
		tb.Fatal(err)
	}
	threads := envInts(tb, frThreadsEnv, []int{16}, 1, 256)[0]
	fr, err := peertest.StartFreeRADIUSContext(tb.Context(), peertest.FreeRADIUSOptions{
		Dir: tb.TempDir(), UDPAuthAddr: frAddr, UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: nasSecret}},
		ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile,
		EAPCert: lab.ServerCert, EAPKey: lab.ServerKey,
		MaxRequests: 1 << 16, Threads: threads,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = fr.Stop() })
	servers := []eapServer{
		{name: "mxedge", addr: mxAddr, cpu: edge.CPUTime, pid: edge.Pid, logs: func() string { return edge.LogTail(20) }},
		{name: "freeradius", addr: frAddr, cpu: fr.CPUTime, pid: fr.Pid, logs: func() string { return fr.LogTail(20) }},
	}
	if diag {
		// Go 1.24+ servers pick the hybrid X25519MLKEM768 key exchange our Go supplicant offers;
		// FreeRADIUS 3.2.1 on OpenSSL 3.0 cannot and uses X25519. The diagnostic row shows what
		// the post-quantum share costs mxedge (GODEBUG tlsmlkem, crypto/tls.Config.CurvePreferences).
		pq, pqAddr := startEdge(tb, lab, 0, true, "GODEBUG=tlsmlkem=0")
		servers = append(servers, eapServer{name: "mx-nomlkem", addr: pqAddr, cpu: pq.CPUTime, pid: pq.Pid,
			logs: func() string { return pq.LogTail(20) }, only13: true})
	}
	return servers
}

// BenchmarkEAPTLS: full EAP-TLS authentications, ECDSA P-256 certificates, TLS 1.2 and
// 1.3, against mxedge's local EAP-TLS server and FreeRADIUS 3.2 with the same certificates and
// the same closed-loop Go load generator, one after the other.
func BenchmarkEAPTLS(b *testing.B) {
	window := envDuration(b, eapDurEnv, 8*time.Second)
	conc := envInts(b, eapConcEnv, []int{8}, 1, 512)[0]
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	servers := startEAPServers(b, lab, true)
	var mu sync.Mutex
	var rows []EAPRow
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if len(rows) > 0 {
			fmt.Printf("\nBenchmarkEAPTLS: full EAP-TLS authentications (ECDSA P-256), %v per server and TLS version, "+
				"closed loop C=%d; %d CPUs, load average %s\n", window, conc, runtime.NumCPU(), bench.LoadAvg())
			WriteEAPTable(os.Stdout, rows)
		}
	}()
	versions := []struct {
		name string
		v    uint16
	}{{"1.2", tls.VersionTLS12}, {"1.3", tls.VersionTLS13}}
	for i, tv := range versions {
		b.Run("tls="+tv.name, func(b *testing.B) {
			cfg := eapClient(lab, tv.v)
			var order []eapServer
			for _, s := range servers {
				if !s.only13 || tv.v == tls.VersionTLS13 {
					order = append(order, s)
				}
			}
			if i%2 == 1 { // alternate, so drift on the shared machine does not favour one server
				slices.Reverse(order)
			}
			for _, s := range order { // warm-up, and a clear failure when a server cannot do it at all
				res, err := LoadEAP(b.Context(), EAPLoadOptions{Addr: s.addr, Secret: nasSecret, Client: cfg,
					Concurrency: conc, Duration: time.Second, Max: 200})
				if err != nil {
					b.Fatal(err)
				}
				if res.OK == 0 {
					b.Errorf("%s TLS %s: no successful authentication during warm-up: %v\n%s", s.name, tv.name, res.FirstErr, s.logs())
				}
			}
			got := map[string]EAPRow{}
			for b.Loop() {
				for _, s := range order {
					stopPerf := perfWindow(b, s.name+"-eap-tls"+tv.name, s.pid(), window)
					w, err := StartWindow(s.cpu)
					if err != nil {
						b.Fatal(err)
					}
					res, err := LoadEAP(b.Context(), EAPLoadOptions{Addr: s.addr, Secret: nasSecret, Client: cfg,
						Concurrency: conc, Duration: window})
					if err != nil {
						b.Fatal(err)
					}
					cpu, err := w.Stop()
					if err != nil {
						b.Fatal(err)
					}
					stopPerf()
					row := EAPRow{Server: s.name, TLS: tv.name, C: conc, Res: res, CPU: cpu}
					if res.Failed > 0 {
						b.Logf("%s TLS %s: %d failed, first: %v", s.name, tv.name, res.Failed, res.FirstErr)
					}
					got[s.name] = row
					mu.Lock()
					rows = append(rows, row)
					mu.Unlock()
				}
			}
			mx, fr := got["mxedge"], got["freeradius"]
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(mx.Res.Rate(), "mxedge-auths/s")
			b.ReportMetric(fr.Res.Rate(), "freeradius-auths/s")
			b.ReportMetric(mx.ServerPerAuth(), "mxedge-µs/auth")
			b.ReportMetric(fr.ServerPerAuth(), "freeradius-µs/auth")
			if mx.ServerPerAuth() > 0 {
				b.ReportMetric(fr.ServerPerAuth()/mx.ServerPerAuth(), "cpu-ratio")
			}
			if d, ok := got["mx-nomlkem"]; ok {
				b.ReportMetric(d.ServerPerAuth(), "mx-nomlkem-µs/auth")
			}
		})
	}
}

// TestHarness is a short run of both setups: a few hundred MAB requests and a few EAP-TLS
// authentications per server and TLS version, so `go test ./bench/survival/` proves the harness.
func TestHarness(t *testing.T) {
	lab, err := pkitest.New(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("mab", func(t *testing.T) {
		_, addr := startEdge(t, lab, 1000, false)
		res, err := LoadMAB(t.Context(), MABLoadOptions{Addr: addr, Secret: nasSecret, Rate: 500,
			Duration: time.Second, Cached: 1000, HitVLAN: CachedVLAN, MissVLAN: mabDefaultVLAN, Drain: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 500 || res.Answered != res.Sent || res.Wrong != 0 || res.Invalid != 0 {
			t.Fatalf("sent %d, answered %d, wrong %d, invalid %d; want 500 all answered", res.Sent, res.Answered, res.Wrong, res.Invalid)
		}
	})
	t.Run("eap-tls", func(t *testing.T) {
		servers := startEAPServers(t, lab, false)
		for _, tv := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			for _, s := range servers {
				res, err := LoadEAP(t.Context(), EAPLoadOptions{Addr: s.addr, Secret: nasSecret, Client: eapClient(lab, tv),
					Concurrency: 2, Duration: 5 * time.Second, Max: 4})
				if err != nil {
					t.Fatal(err)
				}
				if res.OK != 4 || res.Failed != 0 {
					t.Errorf("%s %s: %d ok, %d failed, first error %v\n%s", s.name, tls.VersionName(tv), res.OK, res.Failed, res.FirstErr, s.logs())
				}
			}
		}
	})
}

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", []time.Duration{ms(3)}, 0.99, ms(3)},
		{"p50", hundred, 0.5, ms(50)},
		{"p99", hundred, 0.99, ms(99)},
		{"max", hundred, 1, ms(100)},
		{"min", hundred, 0, ms(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.in, tt.q); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestLoadMABOptions(t *testing.T) {
	tests := []struct {
		name string
		o    MABLoadOptions
	}{
		{"no addr", MABLoadOptions{Secret: "s", Rate: 1, Duration: time.Second}},
		{"no secret", MABLoadOptions{Addr: "127.0.0.1:1", Rate: 1, Duration: time.Second}},
		{"no rate", MABLoadOptions{Addr: "127.0.0.1:1", Secret: "s", Duration: time.Second}},
		{"no duration", MABLoadOptions{Addr: "127.0.0.1:1", Secret: "s", Rate: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if _, err := LoadMAB(ctx, tt.o); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// perfWindow starts `perf record` on pid for the window when PerfEnv is set; the returned
// function waits for it.
func perfWindow(tb testing.TB, name string, pid int, window time.Duration) func() {
	tb.Helper()
	dir := os.Getenv(PerfEnv)
	if dir == "" {
		return func() {}
	}
	p, err := StartPerf(dir, name, pid, window)
	if err != nil {
		tb.Fatal(err)
	}
	return func() {
		out, err := p.Wait()
		if err != nil {
			tb.Error(err)
			return
		}
		tb.Logf("perf profile of %s: %s", name, out)
	}
}
