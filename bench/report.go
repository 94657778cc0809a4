package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Proxy names used in the report.
const (
	ProxyMxedge      = "mxedge"
	ProxyRadsecproxy = "radsecproxy"
)

// Targets the comparison is judged against (bench/README.md): mxedge at most half of radsecproxy's CPU per
// request, at least 1.3× its throughput, and no worse p99, against the same upstream.
const (
	TargetCPURatio  = 0.5
	TargetRateRatio = 1.3
	TargetP99Ratio  = 1.0
)

// CPUFunc reads a process's cumulative CPU time.
type CPUFunc func() (time.Duration, error)

// Target is a proxy to measure.
type Target struct {
	Name string  // ProxyMxedge or ProxyRadsecproxy
	Addr string  // its RADIUS authentication address
	CPU  CPUFunc // its CPU time
	Pid  int     // its process id, for the profilers (PerfEnv); 0 when unknown
}

// Measurement is one proxy measured at one concurrency against one upstream.
type Measurement struct {
	Upstream    string
	Proxy       string
	Concurrency int
	Load        LoadResult
	// CPU time spent during the window by the proxy, the upstream, the load generator (this
	// process), and the whole machine (busy, all CPUs, /proc/stat).
	ProxyCPU, UpstreamCPU, GenCPU, HostBusy time.Duration
	Wall                                    time.Duration
}

// perReq divides a CPU time by the answered requests, in µs.
func (m Measurement) perReq(d time.Duration) float64 {
	if m.Load.Answered == 0 {
		return math.NaN()
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(m.Load.Answered)
}

// ProxyCPUPerReq is the proxy's CPU time per answered request in µs.
func (m Measurement) ProxyCPUPerReq() float64 { return m.perReq(m.ProxyCPU) }

// UpstreamCPUPerReq is the upstream's CPU time per answered request in µs.
func (m Measurement) UpstreamCPUPerReq() float64 { return m.perReq(m.UpstreamCPU) }

// GenCPUPerReq is the load generator's CPU time per answered request in µs.
func (m Measurement) GenCPUPerReq() float64 { return m.perReq(m.GenCPU) }

// FailedShare is the share of sent requests that timed out or got an invalid reply above which a
// measurement counts as failed.
const FailedShare = 0.01

// Failed reports whether the proxy answered nothing, or failed more than FailedShare of the
// requests sent.
func (m Measurement) Failed() bool {
	bad := m.Load.Timeouts + m.Load.ErrorCount()
	return m.Load.Answered == 0 || float64(bad) > FailedShare*float64(m.Load.Sent)
}

// OtherCores is the CPU that processes outside the measurement took during the window, in cores
// (0.5 = half a core busy with something else): the noise indicator.
func (m Measurement) OtherCores() float64 {
	if m.Wall <= 0 {
		return 0
	}
	other := m.HostBusy - m.ProxyCPU - m.UpstreamCPU - m.GenCPU
	return math.Max(0, other.Seconds()/m.Wall.Seconds())
}

// Measure runs o against t and reads every CPU counter right before and right after, so that the
// window holds the run and nothing else. upstream may be nil.
func Measure(ctx context.Context, upstreamName string, t Target, upstream CPUFunc, o LoadOptions) (Measurement, error) {
	o.Target = t.Addr
	m := Measurement{Upstream: upstreamName, Proxy: t.Name, Concurrency: o.Concurrency}
	if upstream == nil {
		upstream = func() (time.Duration, error) { return 0, nil }
	}
	read := func() (p, u, g time.Duration, h HostCPU, err error) {
		if p, err = t.CPU(); err != nil {
			return
		}
		if u, err = upstream(); err != nil {
			return
		}
		if g, err = SelfCPUTime(); err != nil {
			return
		}
		h, err = ReadHostCPU()
		return
	}
	p0, u0, g0, h0, err := read()
	if err != nil {
		return m, err
	}
	perf, err := startPerf(fmt.Sprintf("%s-c%d-%s", upstreamName, o.Concurrency, t.Name), t.Pid, o.Duration)
	if err != nil {
		return m, err
	}
	start := time.Now()
	res, err := Load(ctx, o)
	m.Wall = time.Since(start)
	perf.wait()
	if err != nil {
		return m, err
	}
	p1, u1, g1, h1, err := read()
	if err != nil {
		return m, err
	}
	m.Load = res
	m.ProxyCPU, m.UpstreamCPU, m.GenCPU, m.HostBusy = p1-p0, u1-u0, g1-g0, h1.Busy-h0.Busy
	return m, nil
}

// Comparison pairs mxedge with radsecproxy at one upstream and concurrency.
type Comparison struct {
	Upstream            string
	Concurrency         int
	Mxedge, Radsecproxy Measurement
}

// CPURatio is mxedge's CPU per request over radsecproxy's (target ≤ TargetCPURatio); NaN when
// either proxy failed (a handful of answers makes CPU per request meaningless).
func (c Comparison) CPURatio() float64 {
	if c.Mxedge.Failed() || c.Radsecproxy.Failed() {
		return math.NaN()
	}
	return c.Mxedge.ProxyCPUPerReq() / c.Radsecproxy.ProxyCPUPerReq()
}

// RateRatio is mxedge's throughput over radsecproxy's (target ≥ TargetRateRatio); NaN when
// radsecproxy answered nothing.
func (c Comparison) RateRatio() float64 {
	if c.Radsecproxy.Load.Answered == 0 {
		return math.NaN()
	}
	return c.Mxedge.Load.Rate() / c.Radsecproxy.Load.Rate()
}

// P99Ratio is mxedge's p99 latency over radsecproxy's (target ≤ TargetP99Ratio); NaN when either
// proxy failed: the latency of the few requests that got through is no win.
func (c Comparison) P99Ratio() float64 {
	if c.Mxedge.Failed() || c.Radsecproxy.Failed() {
		return math.NaN()
	}
	return float64(c.Mxedge.Load.P99) / float64(c.Radsecproxy.Load.P99)
}

// Pair groups measurements into comparisons in the order they were taken: a measurement joins the
// open comparison of its (upstream, concurrency) unless that already has its proxy, so repeated
// rounds (-benchtime Nx) pair each round's two measurements. Unpaired measurements are left out.
func Pair(ms []Measurement) []Comparison {
	type key struct {
		up string
		c  int
	}
	open := map[key]int{}
	var out []Comparison
	var have []uint8
	for _, m := range ms {
		var bit uint8
		switch m.Proxy {
		case ProxyMxedge:
			bit = 1
		case ProxyRadsecproxy:
			bit = 2
		default:
			continue
		}
		k := key{m.Upstream, m.Concurrency}
		i, ok := open[k]
		if !ok || have[i]&bit != 0 {
			i = len(out)
			open[k] = i
			out = append(out, Comparison{Upstream: m.Upstream, Concurrency: m.Concurrency})
			have = append(have, 0)
		}
		have[i] |= bit
		if bit == 1 {
			out[i].Mxedge = m
		} else {
			out[i].Radsecproxy = m
		}
	}
	var full []Comparison
	for i, c := range out {
		if have[i] == 3 {
			full = append(full, c)
		}
	}
	return full
}

// WriteTable prints every measurement and then the ratios with their targets.
func WriteTable(w io.Writer, ms []Measurement) {
	sorted := append([]Measurement(nil), ms...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Upstream != b.Upstream {
			return a.Upstream > b.Upstream // "responder" before "freeradius"
		}
		if a.Concurrency != b.Concurrency {
			return a.Concurrency < b.Concurrency
		}
		return a.Proxy > b.Proxy // radsecproxy before mxedge
	})
	fmt.Fprintf(w, "\n%-15s %4s %-11s %8s %8s %8s %8s %6s %6s %9s %9s %9s %6s\n",
		"upstream", "C", "proxy", "answered", "req/s", "p50", "p99", "tmout", "errors",
		"proxy", "upstream", "loadgen", "other")
	fmt.Fprintf(w, "%-15s %4s %-11s %8s %8s %8s %8s %6s %6s %9s %9s %9s %6s\n",
		"", "", "", "", "", "", "", "", "", "µs/req", "µs/req", "µs/req", "cores")
	for _, m := range sorted {
		cpu := []string{"FAILED", "-", "-"} // per answered request means nothing then
		if !m.Failed() {
			cpu = []string{fmt.Sprintf("%.1f", m.ProxyCPUPerReq()), fmt.Sprintf("%.1f", m.UpstreamCPUPerReq()),
				fmt.Sprintf("%.1f", m.GenCPUPerReq())}
		}
		fmt.Fprintf(w, "%-15s %4d %-11s %8d %8.0f %8s %8s %6d %6d %9s %9s %9s %6.2f\n",
			m.Upstream, m.Concurrency, m.Proxy, m.Load.Answered, m.Load.Rate(),
			fmtDur(m.Load.P50), fmtDur(m.Load.P99), m.Load.Timeouts, m.Load.ErrorCount(),
			cpu[0], cpu[1], cpu[2], m.OtherCores())
	}
	cs := Pair(ms)
	if len(cs) == 0 {
		return
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Upstream != cs[j].Upstream {
			return cs[i].Upstream > cs[j].Upstream
		}
		return cs[i].Concurrency < cs[j].Concurrency
	})
	fmt.Fprintf(w, "\nmxedge/radsecproxy        %-18s %-18s %-18s\n",
		fmt.Sprintf("cpu/req (≤%.2f)", TargetCPURatio),
		fmt.Sprintf("req/s (≥%.2f)", TargetRateRatio),
		fmt.Sprintf("p99 (≤%.2f)", TargetP99Ratio))
	for _, c := range cs {
		fmt.Fprintf(w, "%-15s %4d       %-18s %-18s %-18s\n", c.Upstream, c.Concurrency,
			verdict(c.CPURatio(), c.CPURatio() <= TargetCPURatio),
			verdict(c.RateRatio(), c.RateRatio() >= TargetRateRatio),
			verdict(c.P99Ratio(), c.P99Ratio() <= TargetP99Ratio))
	}
}

// verdict renders a ratio against its target; a ratio that cannot be computed is a miss.
func verdict(r float64, ok bool) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a MISS"
	}
	if ok {
		return fmt.Sprintf("%.2f ok", r)
	}
	return fmt.Sprintf("%.2f MISS", r)
}

// fmtDur renders a latency compactly in ms or µs.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

// Summary is a one-line description of a run for logs.
func (m Measurement) Summary() string {
	var errs []string
	for k, v := range m.Load.Errors {
		errs = append(errs, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(errs)
	return fmt.Sprintf("%s/%s c=%d: %d answered, %.0f req/s, p50 %s p99 %s, %d timeouts, errors [%s], proxy %.1f µs/req",
		m.Upstream, m.Proxy, m.Concurrency, m.Load.Answered, m.Load.Rate(), fmtDur(m.Load.P50), fmtDur(m.Load.P99),
		m.Load.Timeouts, strings.Join(errs, " "), m.ProxyCPUPerReq())
}

// Mean is a geometric mean, the right average for ratios.
type Mean struct {
	sum float64
	n   int
}

// Add adds a positive sample; NaN, infinite and non-positive samples are ignored.
func (m *Mean) Add(v float64) {
	if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
		m.sum += math.Log(v)
		m.n++
	}
}

// Value is the geometric mean, or NaN without samples.
func (m Mean) Value() float64 {
	if m.n == 0 {
		return math.NaN()
	}
	return math.Exp(m.sum / float64(m.n))
}
