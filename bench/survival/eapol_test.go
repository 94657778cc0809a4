package survival

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"mxedge/bench"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

// Knobs of BenchmarkEAPTLSEapol.
const (
	eapolRunsEnv = "MXEDGE_SURVIVAL_EAPOL_RUNS"  // authentications per eapol_test process, default 100
	eapolProcEnv = "MXEDGE_SURVIVAL_EAPOL_PROCS" // eapol_test processes in parallel, default 4
)

// eapolRow is one server and TLS version measured with eapol_test.
type eapolRow struct {
	server, tls string
	ok, failed  int
	cpu         CPU
	wall        time.Duration
}

var mppeOK = regexp.MustCompile(`MPPE keys OK: (\d+)\s+mismatch: 0`)

// BenchmarkEAPTLSEapol: full EAP-TLS authentications by a real supplicant, eapol_test
// (wpa_supplicant 2.10 on OpenSSL 3.0), against mxedge's local EAP-TLS server and FreeRADIUS 3.2
// with the same ECDSA P-256 certificates, TLS 1.2 and 1.3, one server after the other: P processes
// in parallel, each authenticating N times (-r N-1; neither server resumes sessions: mxedge sends
// no session ticket, FreeRADIUS's cache is off). An authentication counts when eapol_test's MPPE
// keys match the Access-Accept's. The server's CPU (whole process, /proc) per authentication is the
// figure; the ratio is FreeRADIUS's over mxedge's in the same run.
//
//	make build && go test -run '^$' -bench EAPTLSEapol -benchtime 1x ./bench/survival/
func BenchmarkEAPTLSEapol(b *testing.B) {
	peertest.Require(b, "eapol_test")
	runs := envInts(b, eapolRunsEnv, []int{100}, 1, 10_000)[0]
	procs := envInts(b, eapolProcEnv, []int{4}, 1, 64)[0]
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	servers := startEAPServers(b, lab, false)
	var rows []eapolRow
	defer func() {
		if len(rows) > 0 {
			fmt.Printf("\nBenchmarkEAPTLSEapol: eapol_test, %d processes × %d full authentications per server and TLS version; %d CPUs, load average %s\n",
				procs, runs, runtime.NumCPU(), bench.LoadAvg())
			writeEapolTable(os.Stdout, rows)
		}
	}()
	for i, tv := range []string{"1.2", "1.3"} {
		b.Run("tls"+tv, func(b *testing.B) {
			order := servers
			if i%2 == 1 {
				order = []eapServer{servers[1], servers[0]}
			}
			for b.Loop() {
				for _, s := range order {
					rows = append(rows, eapolRun(b, lab, s, tv, procs, runs))
				}
			}
			var mx, fr float64
			for _, r := range rows {
				if r.tls == tv && r.server == "mxedge" {
					mx = PerOp(r.cpu.Server, r.ok)
				}
				if r.tls == tv && r.server == "freeradius" {
					fr = PerOp(r.cpu.Server, r.ok)
				}
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(mx, "mxedge-µs/auth")
			b.ReportMetric(fr, "freeradius-µs/auth")
			if mx > 0 {
				b.ReportMetric(fr/mx, "freeradius/mxedge")
			}
		})
	}
}

// eapolRun measures one server and TLS version: procs eapol_test processes of runs
// authentications each.
func eapolRun(b *testing.B, lab *pkitest.Lab, s eapServer, tv string, procs, runs int) eapolRow {
	b.Helper()
	host, portStr, _ := cutHostPort(s.addr)
	port, _ := strconv.Atoi(portStr)
	o := peertest.EapolOptions{Server: host, Port: port, Secret: nasSecret, Identity: "anonymous",
		CACert: lab.CAFile, ClientCert: lab.ClientCert, PrivateKey: lab.ClientKey, Repeat: runs - 1,
		Timeout: 10 * time.Second, Dir: b.TempDir()}
	if tv == "1.3" {
		o.TLS13Only = true
	} else {
		o.TLS12Only = true
	}
	w, err := StartWindow(s.cpu)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	row := eapolRow{server: s.name, tls: tv}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range procs {
		wg.Go(func() {
			po := o
			po.CallingStationID = fmt.Sprintf("02:00:00:aa:00:%02x", p)
			res, err := peertest.EapolTest(context.Background(), po)
			ok := 0
			if m := mppeOK.FindStringSubmatch(res.Output); m != nil {
				ok, _ = strconv.Atoi(m[1])
			}
			mu.Lock()
			defer mu.Unlock()
			row.ok += ok
			row.failed += runs - ok
			if err != nil || !res.Success {
				b.Logf("%s TLS %s: eapol_test: %v, %d of %d authenticated\n%s", s.name, tv, err, ok, runs, tail(res.Output, 15))
			}
		})
	}
	wg.Wait()
	row.wall = time.Since(t0)
	if row.cpu, err = w.Stop(); err != nil {
		b.Fatal(err)
	}
	if row.ok == 0 {
		b.Errorf("%s TLS %s: no authentication succeeded\n%s", s.name, tv, s.logs())
	}
	return row
}

func cutHostPort(addr string) (host, port string, ok bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

func tail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if lines++; lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}

// writeEapolTable prints the rows and, per TLS version, FreeRADIUS's CPU per authentication over
// mxedge's.
func writeEapolTable(w *os.File, rows []eapolRow) {
	fmt.Fprintf(w, "%-10s %4s %6s %6s %8s %12s %6s\n", "server", "tls", "auths", "failed", "auths/s", "srv µs/auth", "other")
	for _, r := range rows {
		fmt.Fprintf(w, "%-10s %4s %6d %6d %8.1f %12.0f %6.2f\n", r.server, r.tls, r.ok, r.failed,
			float64(r.ok)/r.wall.Seconds(), PerOp(r.cpu.Server, r.ok), r.cpu.OtherCores)
	}
	for _, tv := range []string{"1.2", "1.3"} {
		var mx, fr float64
		for _, r := range rows {
			switch {
			case r.tls == tv && r.server == "mxedge":
				mx = PerOp(r.cpu.Server, r.ok)
			case r.tls == tv && r.server == "freeradius":
				fr = PerOp(r.cpu.Server, r.ok)
			}
		}
		if mx > 0 && fr > 0 {
			fmt.Fprintf(w, "TLS %s: mxedge %.0f µs/auth (≤600 %s), freeradius/mxedge %.2f (≥4 %s)\n", tv, mx, verdict(mx <= 600), fr/mx, verdict(fr/mx >= 4))
		}
	}
}
