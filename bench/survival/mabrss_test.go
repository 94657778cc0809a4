package survival

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/bench"
	"mxedge/pki/pkitest"
)

// Knobs of BenchmarkLocalMABMemory.
const (
	rssRatesEnv = "MXEDGE_SURVIVAL_RSS_RATES" // offered rates, default 10000,20000,30000,40000
	rssEdgesEnv = "MXEDGE_SURVIVAL_RSS_EDGES" // edges as in MXEDGE_SURVIVAL_MAB_EDGES, default "dup=100000 dup=10000"
)

// rssRow is one open-loop rate against one edge.
type rssRow struct {
	edge           string
	res            PacedMABResult
	cpu            CPU
	before, maxRSS uint64
	anon, file     uint64 // RssAnon (heap, stacks) and RssFile (bbolt's mmap of its files) at the end
}

// BenchmarkLocalMABMemory: what mxedge's memory does as the local MAB answer rate rises. Open
// loop (LoadMABPaced: a fixed offered rate, whatever the answers do), one rate after another
// against each edge of MXEDGE_SURVIVAL_RSS_EDGES (default: the default duplicate cache of
// 100,000 entries and one of 10,000), RSS sampled every 100 ms of each window. With the
// duplicate cache a fixed ring (proxy/dedup.go) RSS follows the configuration, not the rate.
//
//	make build && go test -run '^$' -bench LocalMABMemory -benchtime 1x ./bench/survival/
func BenchmarkLocalMABMemory(b *testing.B) {
	rates := envInts(b, rssRatesEnv, []int{10_000, 20_000, 30_000, 40_000}, 100, 200_000)
	variants := parseEdgeVariants(b, rssEdgesEnv, "dup=100000 dup=10000")
	window := envDuration(b, mabDurEnv, 5*time.Second)
	cached := envInts(b, cacheSizeEnv, []int{100_000}, 1, 2_000_000)[0]
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	type edge struct {
		name string
		p    *bench.Process
		addr string
	}
	var edges []edge
	for _, v := range variants {
		p, addr, _ := startEdgeWith(b, lab, cached, false, v)
		edges = append(edges, edge{v.name, p, addr})
	}
	load := func(ctx context.Context, addr string, rate int, d time.Duration) (PacedMABResult, error) {
		return LoadMABPaced(ctx, PacedMABOptions{Addr: addr, Secret: nasSecret, Rate: rate, Duration: d,
			Cached: cached, HitVLAN: CachedVLAN, MissVLAN: mabDefaultVLAN})
	}
	// Warm-up: page faults, bbolt's mmap, the collector's sizing, and every bounded structure
	// filled: 2×cached requests name 2×cached clients, so the session table (at most
	// sessions.max_entries, 200,000) and the duplicate cache's ring are as full as this load
	// makes them before the first rate, and what follows shows what rate alone does.
	warm := min(rates[0], 20_000)
	for _, e := range edges {
		d := time.Duration(float64(2*cached) / float64(warm) * float64(time.Second))
		if res, err := load(b.Context(), e.addr, warm, max(time.Second, d)); err != nil || res.Answered == 0 {
			b.Fatalf("warm-up, %s: %+v, %v\n%s", e.name, res, err, e.p.LogTail(20))
		}
	}
	var rows []rssRow
	defer func() {
		if len(rows) > 0 {
			fmt.Printf("\nBenchmarkLocalMABMemory: mxedge in survivability mode, %d cached MACs, 50%% hits, %v per rate, open loop (paced generator); %d CPUs, load average %s\n",
				cached, window, runtime.NumCPU(), bench.LoadAvg())
			writeRSSTable(os.Stdout, rows)
		}
	}()
	for _, rate := range rates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for b.Loop() {
				for _, e := range edges {
					time.Sleep(500 * time.Millisecond)
					before, err := bench.ProcRSS(e.p.Pid())
					if err != nil {
						b.Fatal(err)
					}
					w, err := StartWindow(e.p.CPUTime)
					if err != nil {
						b.Fatal(err)
					}
					stop := sampleRSS(e.p.Pid(), 100*time.Millisecond)
					res, err := load(b.Context(), e.addr, rate, window)
					top := stop()
					if err != nil {
						b.Fatal(err)
					}
					cpu, err := w.Stop()
					if err != nil {
						b.Fatal(err)
					}
					anon, file, err := rssSplit(e.p.Pid())
					if err != nil {
						b.Fatal(err)
					}
					if res.Answered == 0 {
						b.Errorf("%s rate %d: no answers\n%s", e.name, rate, e.p.LogTail(20))
					}
					// Stale answers are not errors: an answer later than its identifier's reuse
					// (LoadMABPaced's Sockets) is counted lost, and then stale when it arrives.
					if res.Wrong > 0 || res.IOErrors > 0 {
						b.Errorf("%s rate %d: %d wrong answers, %d socket errors", e.name, rate, res.Wrong, res.IOErrors)
					}
					rows = append(rows, rssRow{edge: e.name, res: res, cpu: cpu, before: before, maxRSS: top, anon: anon, file: file})
				}
			}
			b.ReportMetric(0, "ns/op")
			for _, r := range rows {
				if r.res.Offered == rate {
					b.ReportMetric(float64(r.maxRSS)/(1<<20), "RSS-MiB-"+r.edge)
					b.ReportMetric(r.res.AnswerRate(), "answers/s-"+r.edge)
				}
			}
		})
	}
}

// sampleRSS reads pid's RSS every period until stop, which returns the largest seen (0 if no read
// succeeded).
func sampleRSS(pid int, period time.Duration) (stop func() uint64) {
	var top uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if v, err := bench.ProcRSS(pid); err == nil && v > top {
				top = v
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return top
	}
}

// writeRSSTable prints BenchmarkLocalMABMemory's rows.
func writeRSSTable(w io.Writer, rows []rssRow) {
	fmt.Fprintf(w, "%-14s %8s %9s %9s %7s %7s %7s %8s %8s %8s %10s %9s %6s %11s %11s %5s %5s\n",
		"edge", "offered", "sent/s", "answers/s", "lost", "stale", "late", "p50", "p99", "max lag", "mx µs/ans", "gen µs/rq",
		"other", "RSS before", "RSS max MiB", "anon", "file")
	for _, r := range rows {
		fmt.Fprintf(w, "%-14s %8d %9.0f %9.0f %7d %7d %7d %8s %8s %8s %10.1f %9.1f %6.2f %11.0f %11.0f %5.0f %5.0f\n",
			r.edge, r.res.Offered, r.res.SendRate(), r.res.AnswerRate(), r.res.Lost, r.res.Stale, r.res.Late, fmtDur(r.res.P50),
			fmtDur(r.res.P99), fmtDur(r.res.MaxLag), PerOp(r.cpu.Server, r.res.Answered), PerOp(r.cpu.Gen, r.res.Sent),
			r.cpu.OtherCores, float64(r.before)/(1<<20), float64(r.maxRSS)/(1<<20), float64(r.anon)/(1<<20), float64(r.file)/(1<<20))
	}
}

// rssSplit reads RssAnon and RssFile (bytes) from /proc/PID/status (proc(5)).
func rssSplit(pid int) (anon, file uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("survival: rss: %w", err)
	}
	var got int
	for line := range strings.Lines(string(b)) {
		for _, f := range []struct {
			key string
			v   *uint64
		}{{"RssAnon:", &anon}, {"RssFile:", &file}} {
			if v, ok := strings.CutPrefix(line, f.key); ok {
				kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("survival: rss: %s %w", f.key, err)
				}
				*f.v = kb << 10
				got++
			}
		}
	}
	if got != 2 {
		return 0, 0, fmt.Errorf("survival: rss: no RssAnon/RssFile in /proc/%d/status", pid)
	}
	return anon, file, nil
}
