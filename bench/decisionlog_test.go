package bench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mxedge/edge/decisionlog"
)

// BenchmarkDecisionLogRequestPath measures, in one run, what logging one access decision costs
// the goroutine that makes it: the synchronous info line the engine wrote before (formatted and
// written to a file, as to the journal's stream), against Record into the decision log, whose own
// goroutine writes the same kind of file within the default budgets. It reports both and their
// ratio (decisionlog_speedup: how many decisions Record feeds in the time of one line), 100,000
// decisions each.
//
//	go test -run '^$' -bench DecisionLogRequestPath -benchtime 1x ./bench/
func BenchmarkDecisionLogRequestPath(b *testing.B) {
	dir := b.TempDir()
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		return f
	}
	e := decisionlog.Entry{Code: decisionlog.CodeAccept, NAS: "core-sw1", Port: "GigabitEthernet1/0/7", MAC: "02:00:00:00:00:01",
		User: "02:00:00:00:00:01", Method: "mab", VLAN: "41", Decider: "cache", Reason: "cache-hit", Site: "hq"}
	// Measured by hand, in one run: testing.Benchmark cannot nest inside a running benchmark.
	const n = 100000
	var syncNs, recordNs float64
	for b.Loop() {
		log := slog.New(slog.NewTextHandler(open("sync.log"), nil))
		t0 := time.Now()
		for range n {
			log.Info("local decision", "allowed", true, "method", e.Method, "mac", e.MAC, "user", e.User,
				"nas", e.NAS, "vlan", e.VLAN, "reason", e.Reason)
		}
		syncNs = float64(time.Since(t0).Nanoseconds()) / n

		l, err := decisionlog.New(decisionlog.Options{Logger: slog.New(slog.NewTextHandler(open("decisions.log"), nil))})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx) }()
		t0 = time.Now()
		for range n {
			l.Record(e)
		}
		recordNs = float64(time.Since(t0).Nanoseconds()) / n
		cancel()
		<-done
		st := l.Stats()
		if st.Written+st.Suppressed+st.Dropped != n {
			b.Fatalf("decision log accounted for %+v of %d", st, n)
		}
	}
	b.ReportMetric(syncNs, "sync_line_ns")
	b.ReportMetric(recordNs, "record_ns")
	b.ReportMetric(syncNs/recordNs, "decisionlog_speedup")
}
