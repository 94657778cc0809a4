package sessions

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
)

// Run with:
//
//	go test -run '^$' -bench Sessions -benchtime 1x ./bench/sessions/
//
// MXEDGE_SESSIONS_BENCH_DURATION (default 5s) is the paced window; MXEDGE_SESSIONS_BENCH_N (default
// 100000) the concurrent sessions.
const (
	updateRate = 2000 // accounting updates per second
	// trackerBatchDelay and writerBatchMax are the tracker's sessionBatchDelay and sessionBatchMax
	// (edge/sessions.go).
	trackerBatchDelay = 100 * time.Millisecond
	writerBatchMax    = 512
	batchEvery        = 10 * time.Millisecond // the pace of the updates during the lookups
	lookupsEach       = 2000                  // timed lookups per key
	maxLookupDur      = 20 * time.Second      // bound on the lookup phase
)

func envInt(tb testing.TB, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: not a positive count", name, v)
		}
		return n
	}
	return def
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 10*time.Minute {
			tb.Fatalf("%s=%q: not a duration up to 10m", name, v)
		}
		return d
	}
	return def
}

// sess is session i's keys.
type sess struct {
	mac, user, asid string
	ip4, ip6        netip.Addr
	port            uint32
	nas             string
}

func keys(i int) sess {
	v := (uint64(i) * 0x9E3779B97F4B) & (1<<48 - 1) // a bijection mod 2^48: MACs in random order
	var m [6]byte
	for j := range m {
		m[j] = byte(v >> (40 - 8*j))
	}
	mac := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
	return sess{mac: mac, user: fmt.Sprintf("user%06d@example.com", i), asid: fmt.Sprintf("%08X", i),
		ip4:  netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		ip6:  netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}),
		port: uint32(50000 + i%48), nas: fmt.Sprintf("sw%03d", i/48)}
}

func update(k session.Kind, s sess, at time.Time, octets uint64) session.Update {
	return session.Update{Kind: k, At: at, Rec: session.Record{NAS: s.nas, NASAddr: "10.255.0.1", Vendor: "cisco", Site: "HQ",
		NASPort: s.port, HasNASPort: true, CallingStationID: s.mac, MAC: s.mac, UserName: s.user, AcctSessionID: s.asid,
		FramedIP: s.ip4, FramedIPv6: s.ip6, Interim: 10 * time.Minute, InputOctets: octets, OutputOctets: 2 * octets,
		SessionTime: uint32(octets % 86400)}}
}

// rssBytes is VmRSS from /proc/self/status (proc(5)).
func rssBytes(tb testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// cpuTime is this process's user+system time (getrusage(2)).
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func p99(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)]
}

// BenchmarkSessions: 100k concurrent sessions, 2,000 accounting updates/s, lookups by each key.
func BenchmarkSessions(b *testing.B) {
	n := envInt(b, "MXEDGE_SESSIONS_BENCH_N", 100_000)
	window := envDuration(b, "MXEDGE_SESSIONS_BENCH_DURATION", 5*time.Second)
	dir := b.TempDir()
	rss0 := rssBytes(b)

	// The table: n live sessions (Start), built in batches, not measured.
	ss, err := session.Open(session.Options{Path: filepath.Join(dir, "sessions.db"), MaxEntries: n + n/10})
	if err != nil {
		b.Fatal(err)
	}
	defer ss.Close()
	t0 := time.Now()
	for i := 0; i < n; i += 1000 {
		us := make([]session.Update, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			us = append(us, update(session.KindStart, keys(j), t0, 0))
		}
		if err := ss.Apply(us); err != nil {
			b.Fatal(err)
		}
	}
	build := time.Since(t0)
	if st := ss.Stats(); st.Live != n {
		b.Fatalf("%d live sessions after the build, want %d", st.Live, n)
	}
	runtime.GC()
	debug.FreeOSMemory() // what stays resident is the table's file pages and live heap
	rssTable := rssBytes(b)
	// The reference: the client cache with as many entries, on the same disk, in the same run.
	cs, err := cache.Open(cache.Options{Path: filepath.Join(dir, "cache.db"), QueueSize: 1 << 20, BatchSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	for i := range n {
		k := keys(i)
		cs.Learn(cache.Record{MAC: k.mac, Identity: strings.ReplaceAll(k.mac, ":", ""), Method: cache.MethodMAB,
			NAS: k.nas, Site: "HQ", Attrs: []cache.Attr{{Type: 81, Tag: 1, Value: []byte("41")}}})
	}
	if err := cs.Flush(); err != nil {
		b.Fatal(err)
	}

	// The paced windows: updateRate/s Interim-Updates for random sessions, committed as the
	// tracker's writer commits them: every batch delay, what arrived since, at most writerBatchMax
	// per transaction (with fsync). Once with the tracker's delay, once with a tenth of it.
	rng := rand.New(rand.NewPCG(1, 2))
	total := int(window.Seconds() * updateRate)
	pending := make([]session.Update, total)
	for i := range pending {
		pending[i] = update(session.KindInterim, keys(rng.IntN(n)), t0, uint64(rng.IntN(1<<40)))
	}
	b.ResetTimer()
	type result struct {
		delay        time.Duration
		cpu, wall    time.Duration
		txns         int
		perUpdate    float64
		rate         float64
		maxLagBehind time.Duration
	}
	paced := func(delay time.Duration) result {
		r := result{delay: delay}
		cpu0, wall0 := cpuTime(b), time.Now()
		tick := time.NewTicker(delay)
		defer tick.Stop()
		applied := 0
		for applied < total {
			<-tick.C
			due := min(total, int(time.Since(wall0).Seconds()*updateRate))
			for applied < due {
				k := min(due, applied+writerBatchMax)
				if err := ss.Apply(pending[applied:k]); err != nil {
					b.Fatal(err)
				}
				applied = k
				r.txns++
			}
			// How far the writer is behind the arrivals it has committed (it catches up by batching).
			if lag := time.Since(wall0) - time.Duration(float64(applied)/updateRate*float64(time.Second)); lag > r.maxLagBehind {
				r.maxLagBehind = lag
			}
		}
		r.cpu, r.wall = cpuTime(b)-cpu0, time.Since(wall0)
		r.perUpdate = float64(r.cpu.Nanoseconds()) / 1e3 / float64(total)
		r.rate = float64(total) / r.wall.Seconds()
		return r
	}
	results := []result{paced(trackerBatchDelay), paced(trackerBatchDelay / 10)}
	b.StopTimer()
	runtime.GC()
	debug.FreeOSMemory()
	rssRun := rssBytes(b)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	// Lookups by each key while the updates keep flowing on another goroutine, interleaved with the
	// reference lookup so that both see the same machine.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(batchEvery)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			j := (i * updateRate / 100) % (total - updateRate/100)
			if err := ss.Apply(pending[j : j+updateRate/100]); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	type lk struct {
		name string
		q    func(sess) session.Query
	}
	lookups := []lk{
		{"acct-session-id", func(s sess) session.Query { return session.Query{AcctSessionID: s.asid, NAS: s.nas} }},
		{"mac", func(s sess) session.Query { return session.Query{MAC: s.mac} }},
		{"user", func(s sess) session.Query { return session.Query{UserName: s.user} }},
		{"ipv4", func(s sess) session.Query { return session.Query{IP: s.ip4} }},
		{"ipv6", func(s sess) session.Query { return session.Query{IP: s.ip6} }},
		{"nas-port", func(s sess) session.Query {
			return session.Query{NAS: s.nas, NASPort: s.port, HasNASPort: true}
		}},
	}
	got := map[string][]time.Duration{}
	var ref []time.Duration
	deadline := time.Now().Add(maxLookupDur)
	for i := 0; i < lookupsEach && time.Now().Before(deadline); i++ {
		k := keys(rng.IntN(n))
		for _, l := range lookups {
			q := l.q(k)
			s := time.Now()
			rs, err := ss.Find(q)
			got[l.name] = append(got[l.name], time.Since(s))
			if err != nil || len(rs) != 1 || rs[0].MAC != k.mac {
				b.Fatalf("%s lookup of %+v: %d results, %v", l.name, q, len(rs), err)
			}
		}
		s := time.Now()
		r, ok, err := cs.LookupMAC(k.mac)
		ref = append(ref, time.Since(s))
		if err != nil || !ok || r.MAC != k.mac {
			b.Fatalf("cache lookup %s: %v %v", k.mac, ok, err)
		}
	}
	close(stop)
	<-done
	refP99 := p99(ref)

	fi, _ := os.Stat(filepath.Join(dir, "sessions.db"))
	b.ReportMetric(float64(n), "sessions")
	b.ReportMetric(results[0].rate, "updates/s")
	b.ReportMetric(results[0].perUpdate, "cpu-µs/update")
	b.ReportMetric(results[1].perUpdate/results[0].perUpdate, "cpu-10ms-batches/100ms")
	b.ReportMetric(float64(rssTable-rss0)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
	for _, l := range lookups {
		b.ReportMetric(float64(p99(got[l.name]))/float64(refP99), "p99-"+l.name+"/cache-mac")
	}
	b.Logf("%d sessions built in %v", n, build.Round(time.Millisecond))
	for _, r := range results {
		b.Logf("batch delay %v: %d updates in %v (%.0f/s) in %d transactions cost %v CPU: %.1f µs per update "+
			"(process user+system, fsync per transaction included); writer at most %v behind",
			r.delay, total, r.wall.Round(time.Millisecond), r.rate, r.txns, r.cpu.Round(time.Millisecond), r.perUpdate,
			r.maxLagBehind.Round(time.Millisecond))
	}
	b.Logf("RSS: %.1f MiB before, %.1f MiB with the %d sessions (the table's share %.1f MiB), %.1f MiB with the reference cache "+
		"and after the windows (Go heap in use %.1f MiB); sessions.db %.1f MiB", float64(rss0)/(1<<20), float64(rssTable)/(1<<20), n,
		float64(rssTable-rss0)/(1<<20), float64(rssRun)/(1<<20), float64(ms.HeapInuse)/(1<<20), float64(fi.Size())/(1<<20))
	b.Logf("reference: cache LookupMAC p99 %v over %d lookups (same run, interleaved)", refP99, len(ref))
	for _, l := range lookups {
		b.Logf("  %-16s p99 %v = %.2f × the cache's", l.name, p99(got[l.name]), float64(p99(got[l.name]))/float64(refP99))
	}
}

// TestBenchKeysDistinct: the benchmark's keys are distinct per session (a lookup finds exactly one).
func TestBenchKeysDistinct(t *testing.T) {
	seen := map[string]bool{}
	for i := range 20000 {
		k := keys(i)
		for _, s := range []string{"m" + k.mac, "u" + k.user, "a" + k.nas + k.asid, "4" + k.ip4.String(), "6" + k.ip6.String(),
			"p" + k.nas + strconv.Itoa(int(k.port))} {
			if seen[s] {
				t.Fatalf("session %d repeats key %s", i, s)
			}
			seen[s] = true
		}
	}
}
