package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

// Environment knobs of the benchmarks (see README.md).
const (
	durationEnv    = "MXEDGE_BENCH_DURATION"    // measured window per proxy and concurrency, default 8s
	concurrencyEnv = "MXEDGE_BENCH_CONCURRENCY" // comma-separated, default 16,64,256
	logLevelEnv    = "MXEDGE_BENCH_LOG_LEVEL"   // mxedge's log level, default warn (debug to diagnose)
	upstreamEnv    = "MXEDGE_BENCH_UPSTREAM"    // BenchmarkEdgeInProcess: responder (default) | freeradius | none
	methodsEnv     = "MXEDGE_BENCH_METHODS"     // comma-separated pap, mab; default both
	socketsEnv     = "MXEDGE_BENCH_SOCKETS"     // mxedge's listen.sockets; default: its default
	// procEnv is added to mxedge's environment in BenchmarkProxy, space-separated KEY=VALUE
	// (e.g. GOGC=200): to test a hypothesis about the runtime without rebuilding.
	procEnv = "MXEDGE_BENCH_ENV"
)

// mabClients is how many MACs the generator cycles through in MAB mode; FreeRADIUS knows them
// all (its users file), each with a VLAN, so mxedge learns a VLAN for each.
const mabClients = 1000

// benchMethods returns the request kinds to measure: "pap" (User-Password re-encrypted) and "mab"
// (the proxy also classifies, learns into its cache and publishes a decision event).
func benchMethods(tb testing.TB) []string {
	tb.Helper()
	s := os.Getenv(methodsEnv)
	if s == "" {
		return []string{"pap", "mab"}
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if m != "pap" && m != "mab" {
			tb.Fatalf("%s=%q: want a comma-separated list of pap, mab", methodsEnv, s)
		}
		out = append(out, m)
	}
	return out
}

// benchSockets is mxedge's listen.sockets from MXEDGE_BENCH_SOCKETS; 0 keeps its default.
func benchSockets(tb testing.TB) int {
	tb.Helper()
	s := os.Getenv(socketsEnv)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 64 {
		tb.Fatalf("%s=%q: want 1..64", socketsEnv, s)
	}
	return n
}

// loadFor sets o up for method (see benchMethods).
func loadFor(o LoadOptions, method string) LoadOptions {
	if method == "mab" {
		o.MABClients = mabClients
	}
	return o
}

const ()

// nasSecret is the NAS secret of the load generator at both proxies.
const nasSecret = "bench-nas-secret"

func TestMain(m *testing.M) {
	if served, err := ServeResponderFromEnv(); served {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func benchDuration(tb testing.TB) time.Duration {
	tb.Helper()
	s := os.Getenv(durationEnv)
	if s == "" {
		return 8 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 2*time.Minute {
		tb.Fatalf("%s=%q: want a duration between 0 and 2m", durationEnv, s)
	}
	return d
}

func benchConcurrency(tb testing.TB) []int {
	tb.Helper()
	s := os.Getenv(concurrencyEnv)
	if s == "" {
		return []int{16, 64, 256}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			tb.Fatalf("%s=%q: want comma-separated integers 1..1024", concurrencyEnv, s)
		}
		out = append(out, n)
	}
	return out
}

// mxedgeBin returns $MXEDGE_BIN or builds mxedge into a temp dir.
func mxedgeBin(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(MxedgeBinEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			tb.Fatal(err)
		}
		if st, err := os.Stat(abs); err != nil || st.Mode()&0o111 == 0 {
			tb.Fatalf("%s=%q is not an executable file (run `make build`)", MxedgeBinEnv, p)
		}
		return abs
	}
	bin, err := BuildMxedge(tb.Context(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// upstream is a RadSec server both proxies forward to.
type upstream struct {
	name string
	addr string
	cpu  CPUFunc
	logs func() string
}

// startResponder starts the minimal responder process.
func startResponder(tb testing.TB, lab *pkitest.Lab) upstream {
	tb.Helper()
	p, addr, err := StartResponder(tb.Context(), ResponderOptions{
		Dir: tb.TempDir(), Cert: lab.ServerCert, Key: lab.ServerKey, CA: lab.CAFile,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return upstream{name: "responder", addr: addr, cpu: p.CPUTime, logs: func() string { return p.LogTail(20) }}
}

// startFreeRADIUS starts FreeRADIUS 3.2 with a RadSec listener, raised max_requests
// (TESTING-PEERS.md) and the load generator's user.
func startFreeRADIUS(tb testing.TB, lab *pkitest.Lab) upstream {
	tb.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(tb))
	fr := peertest.StartFreeRADIUS(tb, peertest.FreeRADIUSOptions{
		RadSecAddr: addr,
		ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile,
		Users:       freeRADIUSUsers(),
		MaxRequests: 1 << 20,
	})
	return upstream{name: "freeradius", addr: addr, cpu: fr.CPUTime, logs: func() string { return fr.LogTail(20) }}
}

// freeRADIUSUsers are the load generator's PAP user and its MAB clients, each MAC with a VLAN
// (RFC 3580 §3.31).
func freeRADIUSUsers() []peertest.User {
	users := []peertest.User{{Name: "alice", Password: "secret"}}
	for i := range mabClients {
		users = append(users, peertest.User{Name: MABMAC(i), MAB: true,
			Reply: []string{"Tunnel-Type = VLAN", "Tunnel-Medium-Type = IEEE-802", `Tunnel-Private-Group-Id = "300"`}})
	}
	return users
}

// proxies starts radsecproxy and mxedge in front of up, both with the same client certificate.
func proxies(tb testing.TB, bin string, lab *pkitest.Lab, up upstream) (rp, mx Target, logs func() string) {
	tb.Helper()
	rpAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(tb))
	r := peertest.StartRadsecproxy(tb, peertest.RadsecproxyOptions{
		ListenUDP: rpAddr, Upstream: up.addr,
		Clients: []peertest.Client{{Addr: "127.0.0.1", Secret: nasSecret}},
		Cert:    lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile,
		LogLevel: 1,
	})
	mxAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(tb))
	p, err := StartMxedge(tb.Context(), MxedgeOptions{
		Bin: bin, Dir: tb.TempDir(),
		Auth: mxAddr, Acct: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(tb)),
		Secret:   nasSecret,
		Upstream: up.addr, Cert: lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile,
		LogLevel: os.Getenv(logLevelEnv), Sockets: benchSockets(tb),
		Env: strings.Fields(os.Getenv(procEnv)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
	})
	logs = func() string {
		return fmt.Sprintf("--- radsecproxy ---\n%s\n--- mxedge ---\n%s\n--- %s ---\n%s",
			r.LogTail(20), p.LogTail(20), up.name, up.logs())
	}
	return Target{Name: ProxyRadsecproxy, Addr: rpAddr, CPU: r.CPUTime},
		Target{Name: ProxyMxedge, Addr: mxAddr, CPU: p.CPUTime, Pid: p.Pid()}, logs
}

// BenchmarkProxy compares mxedge with radsecproxy 1.9 in one run: for each upstream (the minimal
// responder process, then FreeRADIUS 3.2) and each concurrency, the same closed-loop generator
// measures radsecproxy and then mxedge (the order alternates between concurrencies so that drift
// does not favour one), each proxy a separate process whose CPU time comes from /proc. It prints
// the table and the ratios at the end and reports the ratios as metrics.
//
//	make build && MXEDGE_BIN=$PWD/bin/mxedge go test -run '^$' -bench Proxy -benchtime 1x ./bench/
func BenchmarkProxy(b *testing.B) {
	peertest.Require(b, "freeradius", "radsecproxy")
	window, levels := benchDuration(b), benchConcurrency(b)
	bin := mxedgeBin(b)
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var all []Measurement
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if len(all) > 0 {
			fmt.Printf("\nBenchmarkProxy: %v per proxy and concurrency, %d CPUs, load average %s\n",
				window, runtime.NumCPU(), LoadAvg())
			WriteTable(os.Stdout, all)
		}
	}()
	upstreams := []struct {
		name  string
		start func(testing.TB, *pkitest.Lab) upstream
	}{{"responder", startResponder}, {"freeradius", startFreeRADIUS}}
	for _, u := range upstreams {
		b.Run(u.name, func(b *testing.B) {
			up := u.start(b, lab)
			rp, mx, logs := proxies(b, bin, lab, up)
			for _, method := range benchMethods(b) {
				name := up.name
				if method != "pap" {
					name += "/" + method
				}
				b.Run(method, func(b *testing.B) {
					for i, c := range levels {
						b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
							order := []Target{rp, mx}
							if i%2 == 1 {
								order = []Target{mx, rp}
							}
							o := loadFor(LoadOptions{Secret: nasSecret, Concurrency: c, Requests: 5_000_000, Duration: window}, method)
							for _, t := range order {
								warm := o
								warm.Target, warm.Duration, warm.Requests = t.Addr, time.Second, 20_000
								res, err := Load(b.Context(), warm)
								if err != nil {
									b.Fatal(err)
								}
								if res.Answered == 0 {
									// Measure anyway: the table must show a proxy that fails, not hide it.
									b.Errorf("%s answered nothing during warm-up (%d timeouts, errors %v)\n%s",
										t.Name, res.Timeouts, res.Errors, logs())
								}
							}
							var got []Measurement
							for b.Loop() {
								for _, t := range order {
									m, err := Measure(b.Context(), name, t, up.cpu, o)
									if err != nil {
										b.Fatal(err)
									}
									b.Log(m.Summary())
									got = append(got, m)
								}
							}
							mu.Lock()
							all = append(all, got...)
							mu.Unlock()
							reportRatios(b, Pair(got))
						})
					}
				})
			}
		})
	}
}

// reportRatios reports the headline ratios (geometric mean over iterations) and both proxies'
// absolute figures as benchmark metrics.
func reportRatios(b *testing.B, cs []Comparison) {
	if len(cs) == 0 {
		return
	}
	var cpu, rate, p99 Mean
	var mxCPU, rpCPU, mxRate, rpRate Mean
	for _, c := range cs {
		cpu.Add(c.CPURatio())
		rate.Add(c.RateRatio())
		p99.Add(c.P99Ratio())
		if !c.Mxedge.Failed() {
			mxCPU.Add(c.Mxedge.ProxyCPUPerReq())
		}
		if !c.Radsecproxy.Failed() {
			rpCPU.Add(c.Radsecproxy.ProxyCPUPerReq())
		}
		mxRate.Add(c.Mxedge.Load.Rate())
		rpRate.Add(c.Radsecproxy.Load.Rate())
	}
	b.ReportMetric(0, "ns/op") // one op is a whole measurement: meaningless
	for _, m := range []struct {
		v    Mean
		unit string
	}{
		{cpu, "cpu-ratio"}, {rate, "req/s-ratio"}, {p99, "p99-ratio"},
		{mxCPU, "mxedge-µs/req"}, {rpCPU, "radsecproxy-µs/req"},
		{mxRate, "mxedge-req/s"}, {rpRate, "radsecproxy-req/s"},
	} {
		if v := m.v.Value(); !math.IsNaN(v) {
			b.ReportMetric(v, m.unit)
		}
	}
}

// BenchmarkEdgeInProcess runs mxedge's components in this process (edge.New, as `mxedge run` does)
// in front of the minimal responder process, so that `-cpuprofile` shows where mxedge spends its
// time, at the first concurrency level. The profile also holds the load generator (package bench);
// the upstream (the responder, or FreeRADIUS with MXEDGE_BENCH_UPSTREAM=freeradius) is another
// process and is not in it.
//
//	go test -run '^$' -bench EdgeInProcess -benchtime 1x -cpuprofile cpu.out ./bench/
//	go tool pprof -top -cum bench.test cpu.out
func BenchmarkEdgeInProcess(b *testing.B) {
	window := benchDuration(b)
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	var up upstream
	switch u := os.Getenv(upstreamEnv); u {
	case "", "responder":
		up = startResponder(b, lab)
	case "freeradius":
		up = startFreeRADIUS(b, lab)
	case "none":
		// A refused upstream: every request is answered locally (survivability), PAP rejected by
		// the default password policy, so profile MAB (MXEDGE_BENCH_METHODS=mab).
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		up = upstream{name: "none", addr: l.Addr().String(), cpu: func() (time.Duration, error) { return 0, nil },
			logs: func() string { return "" }}
		l.Close()
	default:
		b.Fatalf("%s=%q: want responder, freeradius or none", upstreamEnv, u)
	}
	auth := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	o := MxedgeOptions{
		Dir:  b.TempDir(),
		Auth: auth, Acct: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b)), Secret: nasSecret,
		Upstream: up.addr, Cert: lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile, LogLevel: "warn",
		Sockets: benchSockets(b),
	}
	if up.name == "none" {
		o.Extra = "survivability:\n  default_mab_vlan: \"41\"\n"
	}
	path := filepath.Join(b.TempDir(), "mxedge.yaml")
	cfg, err := config.Parse(path, []byte(o.config()))
	if err != nil {
		b.Fatal(err)
	}
	e, err := edge.New(cfg, edge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-e.Ready():
	case <-time.After(10 * time.Second):
		b.Fatal("mxedge not ready")
	}
	lo := loadFor(LoadOptions{Target: auth, Secret: nasSecret, Concurrency: benchConcurrency(b)[0], Requests: 5_000_000}, benchMethods(b)[0])
	warm := lo
	warm.Duration = time.Second
	if res, err := Load(b.Context(), warm); err != nil || res.Answered == 0 {
		b.Fatalf("warm-up: %v, %+v\n%s", err, res, up.logs())
	}
	lo.Duration = window
	self := Target{Name: ProxyMxedge, Addr: auth, CPU: SelfCPUTime}
	var m Measurement
	for b.Loop() {
		m, err = Measure(b.Context(), up.name, self, up.cpu, lo)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Log(m.Summary())
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(m.Load.Rate(), "req/s")
	b.ReportMetric(float64(m.Load.P99.Microseconds()), "p99-µs")
	// This process is mxedge plus the generator.
	b.ReportMetric(m.ProxyCPUPerReq(), "mxedge+loadgen-µs/req")
	b.ReportMetric(m.UpstreamCPUPerReq(), "upstream-µs/req")
}
