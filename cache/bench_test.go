package cache

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Benchmarks against a database of benchEntries records, built once per test
// binary in a temp dir (BenchmarkBuild1M reports the build). Run with:
//
//	go test -run '^$' -bench 1M -benchtime 1x ./cache/
//
// Figures are absolute and machine-dependent; they are for docs/performance.md,
// not asserted.
const benchEntries = 1_000_000

var (
	benchOnce  sync.Once
	benchDir   string
	benchPath  string
	benchErr   error
	benchBuild time.Duration
	benchClock = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) {
	if p := os.Getenv(rssChildEnv); p != "" {
		os.Exit(rssChild(p))
	}
	code := m.Run()
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchMAC spreads i over the 48-bit space (multiplication by an odd
// constant is a bijection mod 2^48), so keys arrive in random order like
// real clients.
func benchMAC(i int) string {
	v := (uint64(i) * 0x9E3779B97F4B) & (1<<48 - 1)
	var b [macLen]byte
	for j := range b {
		b[j] = byte(v >> (40 - 8*j))
	}
	return formatMAC(b)
}

// benchRecord is a realistic entry: half MAB, half EAP-TLS, VLAN tunnel
// attributes and one Cisco-AVPair, authorized within the last TTL.
func benchRecord(i int) Record {
	mac := benchMAC(i)
	r := Record{
		MAC:  mac,
		NAS:  "10.7.50.2",
		Site: "site-" + strconv.Itoa(i%50),
		Attrs: []Attr{
			{Type: 64, Tag: 1, Value: []byte{0, 0, 13}},
			{Type: 65, Tag: 1, Value: []byte{0, 0, 6}},
			{Type: 81, Tag: 1, Value: []byte(strconv.Itoa(40 + i%20))},
			{Type: 26, Vendor: 9, VendorType: 1, Value: []byte("ACS:CiscoSecure-Defined-ACL=corp")},
		},
	}
	if i%2 == 0 {
		r.Method, r.Identity = MethodMAB, strings.ReplaceAll(mac, ":", "")
	} else {
		r.Method, r.Identity = MethodEAPTLS, fmt.Sprintf("user%07d@example.com", i)
	}
	// Spread over the last 6 days so all are live at benchClock with a
	// 7-day TTL and expiries are spread through the index.
	r.LastAuthorized = benchClock.Add(-time.Duration(i%(6*24*60)) * time.Minute)
	r.FirstSeen = r.LastAuthorized.Add(-time.Hour)
	r.Expires = r.LastAuthorized.Add(DefaultTTL)
	return r
}

// benchDB builds the 1M-entry database once and returns its path.
func benchDB(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		// MXEDGE_CACHE_BENCH_DB keeps the database between runs (it is
		// built there if missing) to skip the slow build while iterating.
		if p := os.Getenv("MXEDGE_CACHE_BENCH_DB"); p != "" {
			benchPath = p
			if _, err := os.Stat(p); err == nil {
				return
			}
		} else {
			benchDir, benchErr = os.MkdirTemp("", "mxedge-cache-bench-")
			if benchErr != nil {
				return
			}
			benchPath = filepath.Join(benchDir, "cache.db")
		}
		s, err := Open(Options{Path: benchPath, Now: func() time.Time { return benchClock }, NoSync: true})
		if err != nil {
			benchErr = err
			return
		}
		start := time.Now()
		benchErr = bulkLoad(s, benchEntries)
		benchBuild = time.Since(start)
		if err := s.Close(); benchErr == nil {
			benchErr = err
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath
}

// bulkLoad writes n benchRecords bucket by bucket in key order, 100,000 puts
// per transaction. Appending in key order avoids what makes a random-order
// build of 1M entries take minutes (bbolt inserts into one in-memory node per
// page until the commit splits it, and a random-order commit rewrites most of
// the tree); with bbolt's default 50% fill the pages end up about as full as
// in a tree grown by random learning (measured: 428 MiB for a random-order
// build in 10,000-record transactions). It bypasses txn.put, so it also
// checks its output through the public lookups in the benchmarks.
func bulkLoad(s *Store, n int) error { return bulkLoadOf(s, n, benchRecord) }

// bulkLoadOf is bulkLoad of the records rec(0..n-1).
func bulkLoadOf(s *Store, n int, rec func(int) Record) error {
	type kv struct{ k, v []byte }
	recs := make([]kv, 0, n)
	var ident, exp [][]byte
	for i := range n {
		r, err := normalize(rec(i))
		if err != nil {
			return err
		}
		rk := recordKey(r)
		v, err := encodeRecord(r)
		if err != nil {
			return err
		}
		recs = append(recs, kv{rk, v})
		if indexedIdentity(r) {
			ident = append(ident, identIndexKey(r.Identity, rk))
		}
		exp = append(exp, expiryIndexKey(r.Expires, rk))
	}
	slices.SortFunc(recs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	slices.SortFunc(ident, bytes.Compare)
	slices.SortFunc(exp, bytes.Compare)
	const perTx = 100000
	put := func(bucket []byte, n int, kv func(i int) ([]byte, []byte)) error {
		for i := 0; i < n; i += perTx {
			err := s.update(func(t *txn) error {
				b := t.tx.Bucket(bucket)
				for j := i; j < min(i+perTx, n); j++ {
					k, v := kv(j)
					if err := b.Put(k, v); err != nil {
						return err
					}
				}
				if bytes.Equal(bucket, bucketRecords) {
					t.delta += int64(min(i+perTx, n) - i)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := put(bucketRecords, len(recs), func(i int) ([]byte, []byte) { return recs[i].k, recs[i].v }); err != nil {
		return err
	}
	if err := put(bucketIdent, len(ident), func(i int) ([]byte, []byte) { return ident[i], nil }); err != nil {
		return err
	}
	return put(bucketExpiry, len(exp), func(i int) ([]byte, []byte) { return exp[i], nil })
}

func fileSize(b *testing.B, path string) int64 {
	b.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// procStatus returns VmRSS, VmHWM, RssAnon (heap, stacks) and RssFile
// (mapped file pages: the bbolt mmap, reclaimable by the kernel) in bytes
// from /proc/self/status.
func procStatus() (rss, hwm, anon, file int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return rss, hwm, anon, file
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func reportLatency(b *testing.B, d []time.Duration) {
	b.Helper()
	b.ReportMetric(float64(percentile(d, 0.50).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(percentile(d, 0.99).Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(float64(percentile(d, 0.999).Nanoseconds())/1e3, "p99.9-µs")
}

// BenchmarkBuild1M reports the one-time build of the 1M database (bulkLoad,
// no fsync), its file size and the RSS of this process after it.
func BenchmarkBuild1M(b *testing.B) {
	b.ReportAllocs()
	var path string
	for b.Loop() {
		path = benchDB(b)
	}
	rss, hwm, _, _ := procStatus()
	b.ReportMetric(benchBuild.Seconds(), "build-s")
	b.ReportMetric(float64(fileSize(b, path))/(1<<20), "db-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "hwm-MiB")
}

// BenchmarkLookupMAC1M: one LookupMAC per iteration on random live keys.
func BenchmarkLookupMAC1M(b *testing.B) {
	s := openBench(b, true)
	lat := make([]time.Duration, 0, 1<<20)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		mac := benchMAC((i * 7919) % benchEntries)
		i++
		t0 := time.Now()
		_, ok, err := s.LookupMAC(mac)
		d := time.Since(t0)
		if err != nil || !ok {
			b.Fatalf("lookup %s: %v %v", mac, ok, err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, d)
		}
	}
	reportLatency(b, lat)
}

// BenchmarkLookupIdentity1M: one LookupIdentity per iteration (index hit).
func BenchmarkLookupIdentity1M(b *testing.B) {
	s := openBench(b, true)
	lat := make([]time.Duration, 0, 1<<20)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		n := (i*7919)%benchEntries | 1 // odd: EAP-TLS identities
		i++
		id := fmt.Sprintf("user%07d@example.com", n)
		t0 := time.Now()
		_, ok, err := s.LookupIdentity(id)
		d := time.Since(t0)
		if err != nil || !ok {
			b.Fatalf("lookup %s: %v %v", id, ok, err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, d)
		}
	}
	reportLatency(b, lat)
}

func openBench(b *testing.B, readOnly bool) *Store {
	b.Helper()
	s, err := Open(Options{Path: benchDB(b), ReadOnly: readOnly, Now: func() time.Time { return benchClock }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkColdOpen1M: Open + Stats + Close of the 1M file. The page cache
// is warm (dropping it needs root and disturbs other work on the machine),
// so this is bbolt's open cost: meta pages, freelist, mmap.
func BenchmarkColdOpen1M(b *testing.B) {
	path := benchDB(b)
	b.ReportAllocs()
	var worst time.Duration
	for b.Loop() {
		t0 := time.Now()
		s, err := Open(Options{Path: path, ReadOnly: true, Now: func() time.Time { return benchClock }})
		if err != nil {
			b.Fatal(err)
		}
		st := s.Stats()
		if st.Entries != benchEntries {
			b.Fatalf("entries %d", st.Entries)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
	}
	b.ReportMetric(float64(worst.Microseconds())/1e3, "worst-ms")
}

// BenchmarkLearnThroughput1M: Learn (refreshing existing clients, so each
// write touches a random page of the 1M tree and moves an expiry index
// entry) through the batched writer with fsync on and default batching.
// The producer backs off when the queue is nearly full so nothing is
// dropped; the figure is durable learns per second.
func BenchmarkLearnThroughput1M(b *testing.B) {
	src := benchDB(b)
	path := filepath.Join(b.TempDir(), "cache.db")
	copyFile(b, src, path)
	now := benchClock
	s, err := Open(Options{Path: path, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	i := 0
	b.ReportAllocs()
	start := time.Now()
	cpu0 := cpuTime()
	for b.Loop() {
		for s.queueLen() >= DefaultQueueSize-DefaultBatchSize {
			time.Sleep(100 * time.Microsecond)
		}
		s.Learn(benchRecord((i * 104729) % benchEntries))
		i++
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	st := s.Stats()
	if st.Drops != 0 {
		b.Fatalf("%d drops", st.Drops)
	}
	b.ReportMetric(float64(st.Committed)/elapsed.Seconds(), "learn/s")
	b.ReportMetric(float64(st.Committed)/float64(max(st.Commits, 1)), "ops/commit")
	// Learns per second of process CPU time (user+system, all goroutines):
	// the writer's capacity independent of other load on a shared machine.
	b.ReportMetric(float64(st.Committed)/cpu.Seconds(), "learn/cpu-s")
}

// BenchmarkLookupDuringSweep1M: all 1M entries expire; the sweeper deletes
// them (SweepBatch 1000 per transaction, fsync on) while a reader looks up
// random MACs. Reports the reader's latency, the sweep time and the file
// size afterwards.
func BenchmarkLookupDuringSweep1M(b *testing.B) {
	src := benchDB(b)
	var lat []time.Duration
	var sweepDur time.Duration
	var swept int
	var size int64
	for b.Loop() {
		path := filepath.Join(b.TempDir(), "cache.db")
		copyFile(b, src, path)
		now := benchClock.Add(DefaultTTL + time.Hour) // everything expired
		s, err := Open(Options{Path: path, Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mac := benchMAC((i * 7919) % benchEntries)
				t0 := time.Now()
				_, ok, err := s.LookupMAC(mac)
				d := time.Since(t0)
				if err != nil || ok {
					b.Errorf("lookup during sweep: %v %v", ok, err)
					return
				}
				lat = append(lat, d)
			}
		})
		t0 := time.Now()
		swept, err = s.sweep(context.Background())
		sweepDur = time.Since(t0)
		close(stop)
		wg.Wait()
		if err != nil || swept != benchEntries {
			b.Fatalf("swept %d: %v", swept, err)
		}
		if st := s.Stats(); st.Entries != 0 {
			b.Fatalf("entries left %d", st.Entries)
		}
		must(b, s.Close())
		size = fileSize(b, path)
	}
	reportLatency(b, lat)
	b.ReportMetric(float64(len(lat)), "lookups")
	b.ReportMetric(sweepDur.Seconds(), "sweep-s")
	b.ReportMetric(float64(swept)/sweepDur.Seconds(), "deletes/s")
	b.ReportMetric(float64(size)/(1<<20), "db-after-MiB")
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func copyFile(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	must(b, out.Close())
}

const rssChildEnv = "MXEDGE_CACHE_RSS_CHILD"

// BenchmarkDaemonRSS1M measures what the daemon would hold: a fresh process
// opens the 1M database, looks up every entry once (touching every record
// page), and reports VmRSS/VmHWM and its open time.
func BenchmarkDaemonRSS1M(b *testing.B) {
	path := benchDB(b)
	var rss, hwm, anon, file, openUS float64
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+path)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("rss child: %v", err)
		}
		if _, err := fmt.Sscanf(string(out), "rss=%g hwm=%g anon=%g file=%g open_us=%g", &rss, &hwm, &anon, &file, &openUS); err != nil {
			b.Fatalf("rss child output %q: %v", out, err)
		}
	}
	b.ReportMetric(rss/(1<<20), "rss-MiB")
	b.ReportMetric(hwm/(1<<20), "hwm-MiB")
	b.ReportMetric(anon/(1<<20), "anon-MiB")
	b.ReportMetric(file/(1<<20), "file-MiB")
	b.ReportMetric(openUS/1e3, "open-ms")
}

func rssChild(path string) int {
	t0 := time.Now()
	s, err := Open(Options{Path: path, Now: func() time.Time { return benchClock }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	open := time.Since(t0)
	for i := range benchEntries {
		if _, ok, err := s.Lookup("", benchMAC(i)); err != nil || !ok {
			fmt.Fprintln(os.Stderr, "lookup", i, ok, err)
			return 2
		}
	}
	rss, hwm, anon, file := procStatus()
	_ = s.Close()
	fmt.Printf("rss=%d hwm=%d anon=%d file=%d open_us=%d\n", rss, hwm, anon, file, open.Microseconds())
	return 0
}

// mabBenchEntries is the size of the closed-loop benchmark's cache (bench/survival, FillCache).
const mabBenchEntries = 100_000

// mabBenchRecord is the record bench/survival.FillCache writes: a MAB client and the RFC 3580
// VLAN triplet, each attribute with tag 1 (RFC 2868 §3.1).
func mabBenchRecord(i int) Record {
	mac := benchMAC(i)
	return Record{
		MAC: mac, Identity: strings.ReplaceAll(mac, ":", ""), Method: MethodMAB, NAS: "127.0.0.1",
		Attrs: []Attr{
			{Type: 64, Tag: 1, Value: []byte{0, 0, 13}},
			{Type: 65, Tag: 1, Value: []byte{0, 0, 6}},
			{Type: 81, Tag: 1, Value: []byte("300")},
		},
		LastAuthorized: benchClock.Add(-time.Hour),
		Expires:        benchClock.Add(-time.Hour + DefaultTTL),
	}
}

// openMABBench returns a store of mabBenchEntries MAB records, at benchClock.
func openMABBench(b *testing.B) *Store {
	b.Helper()
	s, err := Open(Options{Path: filepath.Join(b.TempDir(), "cache.db"), NoSync: true, Now: func() time.Time { return benchClock }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := bulkLoadOf(s, mabBenchEntries, mabBenchRecord); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkLookupMAB: the local MAB decision's lookup (survivability.Authorizer), half of the
// MACs cached and half not as in bench/survival's closed loop, in the Calling-Station-Id notation
// Classify hands over (canonical).
func BenchmarkLookupMAB(b *testing.B) {
	s := openMABBench(b)
	macs := make([]string, 1024)
	for i := range macs {
		macs[i] = benchMAC((i * 7919) % (2 * mabBenchEntries)) // above mabBenchEntries: absent
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		mac := macs[i%len(macs)]
		i++
		if _, _, err := s.LookupMAB(mac); err != nil {
			b.Fatal(err)
		}
	}
}
