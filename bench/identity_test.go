package bench

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

// identityRun is one mxedge configuration of BenchmarkIdentityPush, measured.
type identityRun struct {
	name      string
	res       LoadResult
	cpuPerReq float64 // µs of mxedge CPU per accounting request, delivery to the sinks included
	sent      uint64  // events and copies the sinks delivered
	others    float64 // cores busy with anything but mxedge and this process during the load
}

// BenchmarkIdentityPush sends accounting (Start, Interim-Update with a new address, Stop per
// session) through the mxedge binary three times, against the same RadSec upstream: with no
// identity sink, with three (HTTPS with mutual TLS to a receiver here, syslog over UDP to rsyslog,
// the accounting copy to FreeRADIUS), and with one HTTPS sink whose receiver does not exist. It
// reports mxedge's CPU per request with three sinks over none (the sinks' delivery included: the
// window ends when their queues are empty), and the NAS-facing p50 and p99 with the dead sink
// over none. Run it once: go test -run '^$' -bench IdentityPush -benchtime 1x ./bench/
func BenchmarkIdentityPush(b *testing.B) {
	peertest.Require(b, "rsyslogd", "freeradius")
	window := benchDuration(b)
	if os.Getenv(durationEnv) == "" {
		window = 3 * time.Second
	}
	bin := mxedgeBin(b)
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	up := startResponder(b, lab)
	rcv := startBenchReceiver(b, lab)
	udp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	peertest.StartRsyslog(b, peertest.RsyslogOptions{UDPAddr: udp})
	acct := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	peertest.StartFreeRADIUS(b, peertest.FreeRADIUSOptions{UDPAcctAddr: acct, ServerCert: lab.ServerCert, ServerKey: lab.ServerKey,
		CA: lab.CAFile, MaxRequests: 1 << 20, UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: "copy-secret"}}})
	dead := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	https := func(name, addr string) string {
		return fmt.Sprintf("    - {name: %s, type: https, url: \"https://%s/identity\", tls: {ca: %s, certificate: %s, key: %s}}\n",
			name, addr, lab.CAFile, lab.ClientCert, lab.ClientKey)
	}
	runs := []struct{ name, extra string }{
		{"none", ""},
		{"three sinks", "identity:\n  backoff_min: 100ms\n  backoff_max: 1s\n  sinks:\n" + https("jims", rcv.addr) +
			fmt.Sprintf("    - {name: siem, type: syslog, transport: udp, address: %q}\n", udp) +
			fmt.Sprintf("    - {name: rsso, type: radius-accounting, address: %q, secret: copy-secret}\n", acct)},
		{"dead sink", "identity:\n  backoff_min: 100ms\n  backoff_max: 1s\n  sinks:\n" + https("gone", dead)},
		// The same sink alive: what a sink costs whether or not its receiver answers.
		{"live sink", "identity:\n  backoff_min: 100ms\n  backoff_max: 1s\n  sinks:\n" + https("jims", rcv.addr)},
	}
	var out []identityRun
	for b.Loop() {
		out = out[:0]
		for _, r := range runs {
			out = append(out, measureIdentity(b, bin, lab, up, r.name, r.extra, window))
		}
	}
	b.StopTimer()
	none, three, deadRun, live := out[0], out[1], out[2], out[3]
	fmt.Printf("\nload average %s\n%-12s %9s %9s %9s %9s %11s %9s %12s\n", LoadAvg(), "mxedge", "answered", "req/s", "p50", "p99",
		"cpu µs/req", "sent", "other cores")
	for _, r := range out {
		fmt.Printf("%-12s %9d %9.0f %9s %9s %11.1f %9d %12.2f\n", r.name, r.res.Answered, r.res.Rate(), r.res.P50.Round(time.Microsecond),
			r.res.P99.Round(time.Microsecond), r.cpuPerReq, r.sent, r.others)
	}
	cpuRatio := three.cpuPerReq / none.cpuPerReq
	p50Ratio := float64(deadRun.res.P50) / float64(none.res.P50)
	p99Ratio := float64(deadRun.res.P99) / float64(none.res.P99)
	fmt.Printf("three sinks / none: cpu/req %.2f   dead sink / none: p50 %.2f  p99 %.2f  req/s %.2f\n",
		cpuRatio, p50Ratio, p99Ratio, deadRun.res.Rate()/none.res.Rate())
	deadLive := float64(deadRun.res.P50) / float64(live.res.P50)
	fmt.Printf("dead sink / the same sink alive: p50 %.2f  p99 %.2f  req/s %.2f  cpu/req %.2f\n", deadLive,
		float64(deadRun.res.P99)/float64(live.res.P99), deadRun.res.Rate()/live.res.Rate(), deadRun.cpuPerReq/live.cpuPerReq)
	b.ReportMetric(cpuRatio, "cpu-ratio-3sinks")
	b.ReportMetric(p50Ratio, "p50-ratio-dead")
	b.ReportMetric(p99Ratio, "p99-ratio-dead")
	b.ReportMetric(deadLive, "p50-ratio-dead-live")
}

// measureIdentity starts mxedge with extra configuration, warms it up, runs the accounting load
// for window and waits (bounded) for every sink's queue to empty, measuring mxedge's CPU over
// load and delivery.
func measureIdentity(b *testing.B, bin string, lab *pkitest.Lab, up upstream, name, extra string, window time.Duration) identityRun {
	b.Helper()
	dir := b.TempDir()
	o := MxedgeOptions{Bin: bin, Dir: dir, Auth: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b)),
		Acct: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b)), Secret: nasSecret, Upstream: up.addr,
		Cert: lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile, Extra: extra}
	p, err := StartMxedge(b.Context(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	lo := LoadOptions{Target: o.Acct, Secret: nasSecret, Accounting: true, Concurrency: 16, Requests: 5_000_000, Duration: time.Second}
	if res, err := Load(b.Context(), lo); err != nil || res.Answered == 0 {
		b.Fatalf("%s warm-up: %v %+v\n%s", name, err, res, p.LogTail(20))
	}
	ctl := control.Dial(filepath.Join(dir, "control.sock"))
	drained := func() (bool, uint64) {
		if extra == "" {
			return true, 0
		}
		raw, err := ctl.Identity(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		var st edge.IdentityStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			b.Fatal(err)
		}
		var sent uint64
		empty := true
		for _, s := range st.Sinks {
			sent += s.Sent
			if s.Queued > 0 && !strings.HasPrefix(s.Name, "gone") {
				empty = false
			}
		}
		return empty, sent
	}
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) { // the warm-up's events
		if ok, _ := drained(); ok || time.Now().After(end) {
			break
		}
	}
	_, sent0 := drained()
	c0, err := p.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	h0, _ := ReadHostCPU()
	g0, _ := SelfCPUTime()
	lo.Duration = window
	res, err := Load(b.Context(), lo)
	if err != nil {
		b.Fatal(err)
	}
	h1, _ := ReadHostCPU()
	g1, _ := SelfCPUTime()
	cl, _ := p.CPUTime()
	others := float64(h1.Busy-h0.Busy-(g1-g0)-(cl-c0)) / float64(res.Elapsed)
	if res.Answered == 0 || res.Timeouts+res.ErrorCount() > res.Sent/100 {
		b.Fatalf("%s: %+v\n%s", name, res, p.LogTail(20))
	}
	var sent uint64
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok, s := drained()
		sent = s - sent0
		if ok {
			break
		}
		if time.Now().After(end) {
			b.Fatalf("%s: sinks did not drain within 60 s", name)
		}
	}
	c1, err := p.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	return identityRun{name: name, res: res, cpuPerReq: float64((c1 - c0).Microseconds()) / float64(res.Answered), sent: sent, others: others}
}

// benchReceiver is an identity service for the benchmark: HTTPS with a required client
// certificate, answering 204 and counting events.
type benchReceiver struct {
	addr   string
	events atomic.Uint64
}

func startBenchReceiver(b testing.TB, lab *pkitest.Lab) *benchReceiver {
	b.Helper()
	pair, err := tls.LoadX509KeyPair(lab.ServerCert, lab.ServerKey)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(lab.CAFile)
	pool.AppendCertsFromPEM(pem)
	r := &benchReceiver{}
	srv := &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			var doc struct {
				Events []json.RawMessage `json:"events"`
			}
			if err := json.NewDecoder(io.LimitReader(req.Body, 16<<20)).Decode(&doc); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.events.Add(uint64(len(doc.Events)))
			w.WriteHeader(http.StatusNoContent)
		})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	return r
}
