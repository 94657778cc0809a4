package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

var eapolMPPEOK = regexp.MustCompile(`MPPE keys OK: (\d+)\s+mismatch: 0`)

// BenchmarkEAPInProcess runs mxedge's components in this process in survivability mode with local
// EAP-TLS (ECDSA P-256, the lab PKI) and drives them with eapol_test processes, so that
// -cpuprofile shows where a full EAP-TLS authentication by a real supplicant spends mxedge's time;
// this process's CPU is mxedge's alone (the supplicants are other processes).
//
//	go test -run '^$' -bench EAPInProcess -benchtime 1x -cpuprofile /tmp/eap.out -o /tmp/bench.test ./bench/
//	go tool pprof -top -cum /tmp/bench.test /tmp/eap.out
//
// MXEDGE_BENCH_TLS (1.2 or 1.3, default 1.3) picks the version; 4 processes of
// MXEDGE_BENCH_EAPOL_RUNS (default 50) authentications. This process's CPU also holds reading
// eapol_test's debug output (os/exec), a few percent: read the profile, not the µs/auth.
func BenchmarkEAPInProcess(b *testing.B) {
	peertest.Require(b, "eapol_test")
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	auth := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	o := MxedgeOptions{
		Dir: b.TempDir(), Auth: auth, Acct: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b)), Secret: nasSecret,
		Upstream: closed, Cert: lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile, LogLevel: "warn",
		Extra: fmt.Sprintf("survivability:\n  default_dot1x_vlan: \"51\"\n  eap_tls:\n    certificate: %q\n    key: %q\n    ca: %q\n",
			lab.ServerCert, lab.ServerKey, lab.CAFile),
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
	port, _ := strconv.Atoi(auth[len("127.0.0.1:"):])
	eo := peertest.EapolOptions{Port: port, Secret: nasSecret, Identity: "anonymous", CACert: lab.CAFile,
		ClientCert: lab.ClientCert, PrivateKey: lab.ClientKey, Timeout: 10 * time.Second, Dir: b.TempDir()}
	if os.Getenv("MXEDGE_BENCH_TLS") == "1.2" {
		eo.TLS12Only = true
	} else {
		eo.TLS13Only = true
	}
	run := func(procs, n int) int {
		var mu sync.Mutex
		var wg sync.WaitGroup
		ok := 0
		for p := range procs {
			wg.Go(func() {
				po := eo
				po.Repeat, po.CallingStationID = n-1, fmt.Sprintf("02:00:00:bb:00:%02x", p)
				res, err := peertest.EapolTest(context.Background(), po)
				if m := eapolMPPEOK.FindStringSubmatch(res.Output); m != nil {
					k, _ := strconv.Atoi(m[1])
					mu.Lock()
					ok += k
					mu.Unlock()
				}
				if err != nil || !res.Success {
					b.Logf("eapol_test: %v", err)
				}
			})
		}
		wg.Wait()
		return ok
	}
	if run(1, 2) != 2 {
		b.Fatal("warm-up authentications failed")
	}
	n := 50
	if s := os.Getenv("MXEDGE_BENCH_EAPOL_RUNS"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 10_000 {
			b.Fatalf("MXEDGE_BENCH_EAPOL_RUNS=%q: want 1..10000", s)
		}
	}
	var ok int
	var cpu time.Duration
	for b.Loop() {
		c0, _ := SelfCPUTime()
		ok = run(4, n)
		c1, _ := SelfCPUTime()
		cpu = c1 - c0
	}
	if ok == 0 {
		b.Fatal("no authentication")
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(cpu.Microseconds())/float64(ok), "mxedge-µs/auth")
}
