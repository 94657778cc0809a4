package bench

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

// Soak knobs.
const (
	soakEnv     = "MXEDGE_SOAK"      // total duration, e.g. 1h; unset: BenchmarkSoak is skipped
	soakRateEnv = "MXEDGE_SOAK_RATE" // requests/s, default 5000
)

// soakSample is one sample of the soak: mxedge's memory, goroutines and CPU since the last one.
type soakSample struct {
	at         time.Duration
	rss        uint64  // VmRSS
	goroutines float64 // go_goroutines from /metrics
	heap       float64 // go_memstats_heap_inuse_bytes
	res        LoadResult
	cpu        time.Duration
}

// BenchmarkSoak runs MAB at a fixed rate (default 5,000 requests/s, 50,000 MACs, so the cache
// learns, the duplicate cache fills and empties, every decision is counted) through mxedge in
// front of the minimal responder for MXEDGE_SOAK, sampling mxedge's RSS, heap and goroutine count
// every 1/30 of the run (at least 10 s). It fails when requests go unanswered or when, after a
// warm-up of one sample, the last third's RSS or goroutines rise above the first third's: RSS by
// more than 10 % + 8 MiB, goroutines by more than 5.
//
//	make build && MXEDGE_SOAK=1h MXEDGE_BIN=$PWD/bin/mxedge go test -run '^$' -bench Soak -benchtime 1x -timeout 2h ./bench/
func BenchmarkSoak(b *testing.B) {
	total, err := time.ParseDuration(os.Getenv(soakEnv))
	if os.Getenv(soakEnv) == "" {
		b.Skip("set MXEDGE_SOAK (e.g. 1h) to run the soak")
	}
	if err != nil || total < time.Minute || total > 24*time.Hour {
		b.Fatalf("%s=%q: want a duration between 1m and 24h", soakEnv, os.Getenv(soakEnv))
	}
	rate := 5000
	if s := os.Getenv(soakRateEnv); s != "" {
		if _, err := fmt.Sscan(s, &rate); err != nil || rate < 1 || rate > 100_000 {
			b.Fatalf("%s=%q: want 1..100000", soakRateEnv, s)
		}
	}
	every := max(10*time.Second, total/30)
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	up := startResponder(b, lab)
	metrics := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	auth := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b))
	p, err := StartMxedge(b.Context(), MxedgeOptions{
		Bin: mxedgeBin(b), Dir: b.TempDir(), Auth: auth, Acct: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(b)),
		Secret: nasSecret, Upstream: up.addr, Cert: lab.ClientCert, Key: lab.ClientKey, CA: lab.CAFile,
		LogLevel: os.Getenv(logLevelEnv), Metrics: metrics,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := p.Stop(); err != nil {
			b.Error(err)
		}
	})
	var samples []soakSample
	defer func() {
		if len(samples) > 0 {
			fmt.Printf("\nBenchmarkSoak: MAB at %d req/s through mxedge to the responder, %v, a sample every %v; load average %s\n",
				rate, total, every, LoadAvg())
			writeSoakTable(os.Stdout, samples)
		}
	}()
	for b.Loop() {
		start := time.Now()
		for time.Since(start) < total {
			cpu0, err := p.CPUTime()
			if err != nil {
				b.Fatal(err)
			}
			d := min(every, total-time.Since(start))
			res, err := Load(b.Context(), LoadOptions{Target: auth, Secret: nasSecret, Concurrency: 32,
				Requests: int(float64(rate)*d.Seconds()) + 1, Duration: d, Rate: float64(rate), MABClients: 50_000})
			if err != nil {
				b.Fatal(err)
			}
			cpu1, err := p.CPUTime()
			if err != nil {
				b.Fatal(err)
			}
			rss, err := ProcRSS(p.Pid())
			if err != nil {
				b.Fatal(err)
			}
			m, err := Scrape(b.Context(), metrics)
			if err != nil {
				b.Fatal(err)
			}
			s := soakSample{at: time.Since(start), rss: rss, goroutines: m["go_goroutines"],
				heap: m["go_memstats_heap_inuse_bytes"], res: res, cpu: cpu1 - cpu0}
			samples = append(samples, s)
			b.Logf("%v: %d answered, %d timeouts, RSS %.1f MiB, %v goroutines", s.at.Round(time.Second), res.Answered,
				res.Timeouts, float64(rss)/(1<<20), s.goroutines)
			if res.Timeouts+res.ErrorCount() > res.Sent/1000 {
				b.Errorf("%v: %d timeouts and %v errors of %d sent\n%s", s.at, res.Timeouts, res.Errors, res.Sent, p.LogTail(20))
			}
		}
	}
	rssGrowth, gorGrowth, err := soakFlat(samples)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rssGrowth, "rss-growth-MiB")
	b.ReportMetric(gorGrowth, "goroutine-growth")
}

// soakFlat compares the last third of the samples with the first third (after the first sample,
// the warm-up): the median RSS may grow by 10 % + 8 MiB, the most goroutines by 5. It returns the
// growths and an error when either is exceeded.
func soakFlat(s []soakSample) (rssMiB, goroutines float64, err error) {
	if len(s) < 4 {
		return 0, 0, fmt.Errorf("soak: %d samples: too few to judge flatness (run longer)", len(s))
	}
	s = s[1:]
	third := max(1, len(s)/3)
	first, last := s[:third], s[len(s)-third:]
	med := func(ss []soakSample) float64 {
		v := make([]float64, len(ss))
		for i, x := range ss {
			v[i] = float64(x.rss)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	most := func(ss []soakSample) float64 {
		m := 0.0
		for _, x := range ss {
			m = max(m, x.goroutines)
		}
		return m
	}
	r0, r1 := med(first), med(last)
	g0, g1 := most(first), most(last)
	rssMiB, goroutines = (r1-r0)/(1<<20), g1-g0
	if r1 > r0*1.10+8*(1<<20) {
		err = fmt.Errorf("soak: median RSS grew from %.1f to %.1f MiB", r0/(1<<20), r1/(1<<20))
	}
	if g1 > g0+5 {
		err = fmt.Errorf("soak: goroutines grew from %v to %v", g0, g1)
	}
	return rssMiB, goroutines, err
}

// writeSoakTable prints one line per sample.
func writeSoakTable(w *os.File, s []soakSample) {
	fmt.Fprintf(w, "%8s %8s %8s %6s %6s %8s %9s %10s %10s\n", "at", "answered", "req/s", "tmout", "errors", "p99",
		"µs/req", "RSS MiB", "heap MiB")
	for _, x := range s {
		fmt.Fprintf(w, "%8s %8d %8.0f %6d %6d %8s %9.1f %10.1f %10.1f  goroutines %v\n", x.at.Round(time.Second), x.res.Answered,
			x.res.Rate(), x.res.Timeouts, x.res.ErrorCount(), fmtDur(x.res.P99), float64(x.cpu.Microseconds())/float64(max(1, x.res.Answered)),
			float64(x.rss)/(1<<20), x.heap/(1<<20), x.goroutines)
	}
}
