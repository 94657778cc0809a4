package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func meas(up, proxy string, c, answered int, p99 time.Duration, cpu time.Duration) Measurement {
	return Measurement{
		Upstream: up, Proxy: proxy, Concurrency: c,
		Load:     LoadResult{Sent: answered, Answered: answered, Elapsed: time.Second, P50: p99 / 2, P99: p99},
		ProxyCPU: cpu, Wall: time.Second, HostBusy: cpu,
	}
}

func TestComparisonRatios(t *testing.T) {
	tests := []struct {
		name            string
		mx, rp          Measurement
		cpu, rate, p99  float64
		cpuOK, rateOK   bool
		p99OK, p99IsNaN bool
	}{
		{
			name: "mxedge meets every target",
			mx:   meas("r", ProxyMxedge, 16, 20000, 2*time.Millisecond, 400*time.Millisecond),
			rp:   meas("r", ProxyRadsecproxy, 16, 10000, 4*time.Millisecond, 600*time.Millisecond),
			cpu:  (400.0 / 20000) / (600.0 / 10000), rate: 2, p99: 0.5,
			cpuOK: true, rateOK: true, p99OK: true,
		},
		{
			name: "mxedge failed most requests",
			mx: func() Measurement {
				m := meas("r", ProxyMxedge, 16, 17, 3*time.Millisecond, 100*time.Millisecond)
				m.Load.Sent, m.Load.Errors = 16000, map[string]int{ErrKindReject: 15983}
				return m
			}(),
			rp:  meas("r", ProxyRadsecproxy, 16, 10000, 4*time.Millisecond, 600*time.Millisecond),
			cpu: math.NaN(), rate: 0.0017, p99: math.NaN(), p99IsNaN: true,
		},
		{
			name: "mxedge answered nothing",
			mx:   meas("r", ProxyMxedge, 16, 0, 0, 100*time.Millisecond),
			rp:   meas("r", ProxyRadsecproxy, 16, 10000, 4*time.Millisecond, 600*time.Millisecond),
			cpu:  math.NaN(), rate: 0, p99: math.NaN(), p99IsNaN: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := Pair([]Measurement{tt.rp, tt.mx})
			if len(cs) != 1 {
				t.Fatalf("Pair: %d comparisons", len(cs))
			}
			c := cs[0]
			near := func(a, b float64) bool {
				return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) < 1e-9
			}
			if !near(c.CPURatio(), tt.cpu) || !near(c.RateRatio(), tt.rate) || !near(c.P99Ratio(), tt.p99) {
				t.Errorf("ratios cpu %v rate %v p99 %v; want %v %v %v", c.CPURatio(), c.RateRatio(), c.P99Ratio(), tt.cpu, tt.rate, tt.p99)
			}
			var buf bytes.Buffer
			WriteTable(&buf, []Measurement{tt.rp, tt.mx})
			out := buf.String()
			misses := strings.Count(out, "MISS")
			want := 0
			for _, ok := range []bool{tt.cpuOK, tt.rateOK, tt.p99OK} {
				if !ok {
					want++
				}
			}
			if misses != want {
				t.Errorf("table has %d MISS, want %d:\n%s", misses, want, out)
			}
		})
	}
}

func TestPairSkipsUnpaired(t *testing.T) {
	ms := []Measurement{
		meas("a", ProxyMxedge, 16, 1, time.Millisecond, time.Millisecond),
		meas("a", ProxyRadsecproxy, 64, 1, time.Millisecond, time.Millisecond),
	}
	if cs := Pair(ms); len(cs) != 0 {
		t.Errorf("Pair = %+v, want none", cs)
	}
}

func TestPairRounds(t *testing.T) {
	ms := []Measurement{
		meas("a", ProxyRadsecproxy, 16, 100, time.Millisecond, time.Millisecond),
		meas("a", ProxyMxedge, 16, 200, time.Millisecond, time.Millisecond),
		meas("a", ProxyRadsecproxy, 16, 300, time.Millisecond, time.Millisecond),
		meas("a", ProxyMxedge, 16, 400, time.Millisecond, time.Millisecond),
	}
	cs := Pair(ms)
	if len(cs) != 2 || cs[0].Radsecproxy.Load.Answered != 100 || cs[0].Mxedge.Load.Answered != 200 ||
		cs[1].Radsecproxy.Load.Answered != 300 || cs[1].Mxedge.Load.Answered != 400 {
		t.Errorf("Pair = %+v", cs)
	}
}

func TestMean(t *testing.T) {
	var m Mean
	if !math.IsNaN(m.Value()) {
		t.Error("empty mean is not NaN")
	}
	for _, v := range []float64{2, 8, math.NaN(), 0, math.Inf(1)} {
		m.Add(v)
	}
	if got := m.Value(); math.Abs(got-4) > 1e-9 {
		t.Errorf("geometric mean = %v, want 4", got)
	}
}

func TestSoakFlat(t *testing.T) {
	mk := func(rss []uint64, gor []float64) []soakSample {
		var s []soakSample
		for i := range rss {
			s = append(s, soakSample{rss: rss[i] << 20, goroutines: gor[i]})
		}
		return s
	}
	for _, tc := range []struct {
		name string
		s    []soakSample
		ok   bool
	}{
		{"flat after warm-up", mk([]uint64{20, 80, 82, 81, 83, 80, 82}, []float64{20, 40, 41, 40, 42, 41, 40}), true},
		{"rss grows", mk([]uint64{80, 80, 90, 100, 110, 120, 130}, []float64{40, 40, 40, 40, 40, 40, 40}), false},
		{"goroutines leak", mk([]uint64{80, 80, 80, 80, 80, 80, 80}, []float64{40, 40, 41, 50, 60, 70, 80}), false},
		{"too short", mk([]uint64{80, 80}, []float64{40, 40}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := soakFlat(tc.s); (err == nil) != tc.ok {
				t.Fatalf("soakFlat: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestSoakCPU: a machine growing quiet makes every process's CPU per answer rise; the ratio to the
// responder's does not, so the drift stays 1. mxedge getting dearer on its own moves the ratio.
func TestSoakCPU(t *testing.T) {
	mk := func(mx, up []float64) []soakSample {
		var s []soakSample
		for i := range mx {
			s = append(s, soakSample{res: LoadResult{Answered: 1000}, cpu: time.Duration(mx[i] * 1000 * float64(time.Microsecond)),
				up: time.Duration(up[i] * 1000 * float64(time.Microsecond))})
		}
		return s
	}
	quieter := soakCPU(mk([]float64{99, 40, 42, 41, 80, 82, 81}, []float64{99, 10, 10.5, 10.25, 20, 20.5, 20.25}))
	if quieter.first != 42 || quieter.last != 82 || math.Abs(quieter.drift()-1) > 1e-9 {
		t.Fatalf("machine grows quiet: %+v, drift %v; want 42 → 82 µs (upper medians), drift 1", quieter, quieter.drift())
	}
	dearer := soakCPU(mk([]float64{99, 40, 40, 40, 60, 60, 60}, []float64{99, 10, 10, 10, 10, 10, 10}))
	if math.Abs(dearer.drift()-1.5) > 1e-9 {
		t.Fatalf("mxedge grows dearer: drift %v, want 1.5", dearer.drift())
	}
	if d := soakCPU(mk([]float64{1, 2}, []float64{1, 1})); d.drift() != 0 {
		t.Fatalf("too few samples: drift %v, want 0", d.drift())
	}
}
