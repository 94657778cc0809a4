package survival

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxedge/bench"
	"mxedge/pki/pkitest"
)

// Knobs of BenchmarkLocalMABClosed.
const (
	mabConcEnv  = "MXEDGE_SURVIVAL_MAB_CONC"  // closed-loop concurrency levels, default 32,128
	mabEdgesEnv = "MXEDGE_SURVIVAL_MAB_EDGES" // the edges compared, default "sockets=1 split=0"
	// mabGenEnv picks the load generator: "batched" (default, LoadMABClosed: recvmmsg/sendmmsg
	// on a few sockets, a few µs per request) or "load" (bench.Load: a goroutine and a socket per
	// request in flight, about 20 µs per request here, a core at 30k/s).
	mabGenEnv = "MXEDGE_SURVIVAL_MAB_GEN"
	// mabGenSocketsEnv is how many sockets the batched generator uses (default 4, so that the
	// kernel spreads them over the edge's SO_REUSEPORT sockets as it would several NASes).
	mabGenSocketsEnv = "MXEDGE_SURVIVAL_MAB_GEN_SOCKETS"
	// mabScatterEnv=1 has the batched generator ask for the MACs in a random order
	// (ClosedMABOptions.Scatter) instead of in the order of their numbers.
	mabScatterEnv = "MXEDGE_SURVIVAL_MAB_SCATTER"
)

// localDecisions is the counter of local decisions (docs/metrics.md).
const localDecisions = "mxedge_local_decisions_total"

// edgeVariant is one edge of BenchmarkLocalMABClosed: its listen.split_batch and listen.sockets.
type edgeVariant struct {
	name           string
	split, sockets int
	bin, log       string // another mxedge binary (an older build, for a before/after); a log level
	noSessions     bool   // sessions.enabled: false (docs/sessions.md)
	dupSize        int    // duplicate_cache_size; 0 leaves the default
	gogc           int    // the edge's GOGC (the collector's target, a diagnostic); 0 leaves the default
}

// edgeVariants parses MXEDGE_SURVIVAL_MAB_EDGES: space-separated edges, each a comma-separated
// list of split=N (listen.split_batch, 0 never), sockets=N (listen.sockets), bin=PATH (another
// mxedge binary, e.g. a build of an older commit: a before/after in one run), log=LEVEL and
// sessions=off (the session table off; a binary that predates the key refuses it) and dup=N
// (duplicate_cache_size) and gogc=N (the edge's GOGC). The default
// compares one socket with the default (one SO_REUSEPORT socket per CPU).
func edgeVariants(tb testing.TB) []edgeVariant {
	tb.Helper()
	return parseEdgeVariants(tb, mabEdgesEnv, "sockets=1 split=0")
}

// parseEdgeVariants parses the edges of environment variable env (def when unset).
func parseEdgeVariants(tb testing.TB, env, def string) []edgeVariant {
	tb.Helper()
	s := cmp.Or(os.Getenv(env), def)
	var out []edgeVariant
	for _, f := range strings.Fields(s) {
		v := edgeVariant{name: f}
		for _, kv := range strings.Split(f, ",") {
			k, val, _ := strings.Cut(kv, "=")
			n, err := strconv.Atoi(val)
			switch {
			case k == "bin" && val != "":
				v.bin = val
				v.name = strings.Replace(v.name, val, filepath.Base(val), 1)
			case k == "log" && val != "":
				v.log = val
			case k == "sessions" && val == "off":
				v.noSessions = true
			case err == nil && k == "dup" && n >= 1024 && n <= 10_000_000:
				v.dupSize = n
			case err == nil && k == "gogc" && n >= 25 && n <= 10_000:
				v.gogc = n
			case err == nil && k == "split" && (n == 0 || n >= 2 && n <= 32):
				v.split = n
			case err == nil && k == "sockets" && n >= 1 && n <= 64:
				v.sockets = n
			default:
				tb.Fatalf("%s=%q: %q is not split=0|2..32, sockets=1..64, bin=PATH, log=LEVEL, sessions=off, dup=1024..10000000 or gogc=25..10000", env, s, kv)
			}
		}
		out = append(out, v)
	}
	return out
}

// closedRow is one closed-loop measurement of one edge.
type closedRow struct {
	edge string
	c    int
	// counted is the rise of mxedge_local_decisions_total over the row: with no timeout it must
	// equal the answers (the counters are on the request path, never fed by the event bus).
	counted float64
	res     bench.LoadResult
	cpu     CPU
	rss     uint64
}

// BenchmarkLocalMABClosed: the most local MAB answers mxedge gives, closed loop (C workers, one
// request in flight each, bench.Load in MAB mode), half of the MACs cached, half not; and, in the
// same run, how that changes with the front door's settings: one edge per variant of
// MXEDGE_SURVIVAL_MAB_EDGES (default: split=0, the default, the reader answering every
// request alone, and split=8), measured one after the other while the others
// idle. The ratio column is each edge's answers/s against the first edge's at the same C.
//
//	make build && go test -run '^$' -bench LocalMABClosed -benchtime 1x ./bench/survival/
func BenchmarkLocalMABClosed(b *testing.B) {
	levels := envInts(b, mabConcEnv, []int{32, 128}, 1, 4096)
	variants := edgeVariants(b)
	window := envDuration(b, mabDurEnv, 5*time.Second)
	cached := envInts(b, cacheSizeEnv, []int{100_000}, 1, 2_000_000)[0]
	lab, err := pkitest.New(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	type edge struct {
		name, bin     string
		p             *bench.Process
		addr, metrics string
	}
	var edges []edge
	for _, v := range variants {
		p, addr, metrics := startEdgeWith(b, lab, cached, false, v)
		edges = append(edges, edge{v.name, v.bin, p, addr, metrics})
	}
	// Half the requests name a cached client (VLAN 300), half an unknown one (default VLAN): the
	// generator checks only that each is a valid Access-Accept; BenchmarkLocalMAB checks VLANs.
	mac := func(i int) string { return MAC(uint8(i&1), uint32(i>>1)%uint32(cached)) }
	gen := os.Getenv(mabGenEnv)
	genSockets := envInts(b, mabGenSocketsEnv, []int{4}, 1, 64)[0]
	scatter := envInts(b, mabScatterEnv, []int{0}, 0, 1)[0] == 1
	load := func(ctx context.Context, addr string, c int, d time.Duration) (bench.LoadResult, error) {
		switch gen {
		case "load":
			return bench.Load(ctx, bench.LoadOptions{Target: addr, Secret: nasSecret, Concurrency: c, Requests: 5_000_000,
				Duration: d, MABClients: 2 * cached, MAC: mac})
		case "", "batched":
			return LoadMABClosed(ctx, ClosedMABOptions{Addr: addr, Secret: nasSecret, Concurrency: c,
				Sockets: min(genSockets, c), Duration: d, Cached: cached, HitVLAN: CachedVLAN, MissVLAN: mabDefaultVLAN,
				Scatter: scatter})
		}
		b.Fatalf("%s=%q: want batched or load", mabGenEnv, gen)
		return bench.LoadResult{}, nil
	}
	for _, e := range edges {
		if res, err := load(b.Context(), e.addr, levels[0], time.Second); err != nil || res.Answered == 0 {
			b.Fatalf("warm-up, %s: %+v, %v\n%s", e.name, res, err, e.p.LogTail(20))
		}
	}
	var rows []closedRow
	defer func() {
		if len(rows) == 0 {
			return
		}
		order := "in order"
		if scatter {
			order = "scattered"
		}
		fmt.Printf("\nBenchmarkLocalMABClosed: mxedge in survivability mode, %d cached MACs, 50%% hits, MACs %s, %v per row, closed loop, generator %s; %d CPUs, load average %s\n",
			cached, order, window, cmp.Or(gen, "batched"), runtime.NumCPU(), bench.LoadAvg())
		writeClosedTable(os.Stdout, rows)
	}()
	for i, c := range levels {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			order := edges
			if i%2 == 1 { // alternate, so drift on the machine favours no edge
				order = append([]edge(nil), edges...)
				for l, r := 0, len(order)-1; l < r; l, r = l+1, r-1 {
					order[l], order[r] = order[r], order[l]
				}
			}
			for b.Loop() {
				for _, e := range order {
					time.Sleep(500 * time.Millisecond) // let the previous row's stragglers settle
					m0, err := bench.Scrape(b.Context(), e.metrics)
					if err != nil {
						b.Fatal(err)
					}
					w, err := StartWindow(e.p.CPUTime)
					if err != nil {
						b.Fatal(err)
					}
					wait := perfWindow(b, fmt.Sprintf("closed-%s-c%d", filepath.Base(e.name), c), e.p.Pid(), window)
					res, err := load(b.Context(), e.addr, c, window)
					if err != nil {
						b.Fatal(err)
					}
					cpu, err := w.Stop()
					wait()
					if err != nil {
						b.Fatal(err)
					}
					rss, err := bench.ProcRSS(e.p.Pid())
					if err != nil {
						b.Fatal(err)
					}
					m1, err := bench.Scrape(b.Context(), e.metrics)
					if err != nil {
						b.Fatal(err)
					}
					counted := m1[localDecisions] - m0[localDecisions]
					// Only this build's: an older binary may count differently (it is the reference).
					if res.Timeouts == 0 && counted != float64(res.Answered) && e.bin == "" {
						b.Errorf("%s c=%d: %v local decisions counted, %d answered", e.name, c, counted, res.Answered)
					}
					if res.Answered == 0 {
						b.Errorf("%s c=%d: no answers (%d timeouts, %v)\n%s", e.name, c, res.Timeouts, res.Errors, e.p.LogTail(20))
					}
					rows = append(rows, closedRow{edge: e.name, c: c, res: res, cpu: cpu, rss: rss, counted: counted})
				}
			}
			b.ReportMetric(0, "ns/op")
			for _, r := range rows {
				if r.c == c {
					b.ReportMetric(r.res.Rate(), "answers/s-"+r.edge)
					b.ReportMetric(float64(r.res.P99.Microseconds()), "p99-µs-"+r.edge)
				}
			}
		})
	}
}

// writeClosedTable prints BenchmarkLocalMABClosed's rows; ratio is answers/s against the row of
// the first listen.sockets value at the same C in the same run.
func writeClosedTable(w io.Writer, rows []closedRow) {
	fmt.Fprintf(w, "%-18s %5s %8s %9s %8s %8s %6s %6s %10s %9s %6s %8s %7s  %-7s  %s\n",
		"edge", "C", "answered", "answers/s", "p50", "p99", "tmout", "errors", "mx µs/ans", "gen µs/rq",
		"other", "RSS MiB", "ratio", "p99<2ms", "counted")
	ref := map[int]float64{}
	for _, r := range rows {
		if _, ok := ref[r.c]; !ok && r.edge == rows[0].edge {
			ref[r.c] = r.res.Rate()
		}
	}
	for _, r := range rows {
		ratio := "-"
		if v := ref[r.c]; v > 0 {
			ratio = fmt.Sprintf("%.2f", r.res.Rate()/v)
		}
		verdict := "ok"
		if r.res.P99 >= P99Target || r.res.Answered == 0 || r.res.Timeouts > 0 || r.res.ErrorCount() > 0 {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "%-18s %5d %8d %9.0f %8s %8s %6d %6d %10.1f %9.1f %6.2f %8.0f %7s  %-7s  %.0f\n",
			r.edge, r.c, r.res.Answered, r.res.Rate(), fmtDur(r.res.P50), fmtDur(r.res.P99), r.res.Timeouts,
			r.res.ErrorCount(), PerOp(r.cpu.Server, r.res.Answered), PerOp(r.cpu.Gen, r.res.Sent), r.cpu.OtherCores,
			float64(r.rss)/(1<<20), ratio, verdict, r.counted)
	}
}
