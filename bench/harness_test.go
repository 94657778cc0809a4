package bench

import (
	"testing"
	"time"

	"mxedge/pki/pkitest"
)

// TestHarness runs the benchmark's whole set-up briefly: the responder process, radsecproxy and a
// freshly built mxedge in front of it, a few hundred requests through each proxy, and CPU time read
// from /proc for every process. It keeps `go test ./bench/` meaningful without the long benchmark.
func TestHarness(t *testing.T) {
	lab, err := pkitest.New(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	up := startResponder(t, lab)
	rp, mx, logs := proxies(t, mxedgeBin(t), lab, up)
	for _, target := range []Target{rp, mx} {
		t.Run(target.Name, func(t *testing.T) {
			m, err := Measure(t.Context(), up.name, target, up.cpu, LoadOptions{
				Secret: nasSecret, Concurrency: 8, Requests: 400, Duration: 10 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(m.Summary())
			if m.Load.Answered != 400 || m.Load.Timeouts != 0 || m.Load.ErrorCount() != 0 {
				t.Errorf("%s\n%s", m.Summary(), logs())
			}
			if m.Wall <= 0 || m.ProxyCPU < 0 || m.UpstreamCPU < 0 || m.GenCPU < 0 {
				t.Errorf("implausible CPU figures: %+v", m)
			}
		})
	}
}
