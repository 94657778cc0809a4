package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/cluster"
)

type node struct {
	c     *cluster.Cluster
	store *cache.Store
	addr  string
	stop  func()
}

func freePort(tb testing.TB) uint16 {
	for range 20 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		l.Close()
		if err == nil {
			u.Close()
			return uint16(port)
		}
	}
	tb.Fatal("no free port")
	return 0
}

func start(tb testing.TB, name string, key []byte, join []string, syncEvery time.Duration) *node {
	clock := cluster.NewClock(nil, 0)
	store, err := cache.Open(cache.Options{Path: filepath.Join(tb.TempDir(), "cache.db"), NoSync: true, Now: clock.Now,
		MaxEntries: 1_000_000, QueueSize: 1 << 17})
	if err != nil {
		tb.Fatal(err)
	}
	port := freePort(tb)
	c, err := cluster.New(cluster.Options{Name: name, Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		Join: join, Keys: [][]byte{key}, Store: store, Clock: clock, SyncInterval: syncEvery})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); store.Run(ctx) }()
	go func() { defer wg.Done(); c.Run(ctx) }()
	n := &node{c: c, store: store, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); wg.Wait(); store.Close() }) }
	tb.Cleanup(n.stop)
	return n
}

func record(i int) cache.Record {
	mac := fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", i>>32&0xff, i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
	return cache.Record{MAC: mac, Identity: mac, Method: cache.MethodMAB, NAS: "sw1", Site: "hq",
		Attrs: []cache.Attr{{Type: 64, Tag: 1, Value: []byte{0, 0, 13}}, {Type: 65, Tag: 1, Value: []byte{0, 0, 6}},
			{Type: 81, Tag: 1, Value: []byte(fmt.Sprint(100 + i%900))}}}
}

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func key(tb testing.TB) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func waitEntries(tb testing.TB, d time.Duration, want int, ns ...*node) time.Duration {
	t0 := time.Now()
	for {
		ok := true
		for _, n := range ns {
			if n.store.Stats().Entries < want {
				ok = false
			}
		}
		if ok {
			return time.Since(t0)
		}
		if time.Since(t0) > d {
			for _, n := range ns {
				tb.Logf("entries %d of %d", n.store.Stats().Entries, want)
			}
			tb.Fatalf("not converged within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func payload(ns ...*node) uint64 {
	var b uint64
	for _, n := range ns {
		st := n.c.Status().Stats
		b += st.BytesSent
	}
	return b
}

// BenchmarkClusterConvergence: edge-a holds N entries it never gossiped (learned before the
// cluster existed); edge-b and edge-c join empty. Reported: the time until both hold all N, the
// replication octets sent (anti-entropy answers; memberlist's own framing and the 3 KiB digests
// are not counted), and octets per entry.
func BenchmarkClusterConvergence(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for range b.N {
				k := key(b)
				a := start(b, "edge-a", k, nil, time.Second)
				recs := make([]cache.Record, 0, 1000)
				now := time.Now()
				for i := range n {
					r := record(i)
					r.LastAuthorized = now.Add(-time.Duration(n-i) * time.Millisecond)
					recs = append(recs, r)
					if len(recs) == cap(recs) || i == n-1 {
						if _, err := a.store.Merge(recs); err != nil {
							b.Fatal(err)
						}
						recs = recs[:0]
					}
				}
				c0 := cpu()
				bb := start(b, "edge-b", k, []string{a.addr}, time.Second)
				cc := start(b, "edge-c", k, []string{a.addr}, time.Second)
				took := waitEntries(b, 5*time.Minute, n, bb, cc)
				used := cpu() - c0
				sent := payload(a, bb, cc)
				b.ReportMetric(took.Seconds(), "converge-s")
				b.ReportMetric(float64(sent)/float64(n), "bytes/entry")
				b.ReportMetric(float64(used.Microseconds())/float64(2*n), "cpu-µs/entry-copy")
				b.Logf("%d entries: edge-b and edge-c converged in %s; %d replication octets (%.0f per entry); CPU %s (%.1f µs per entry copied)",
					n, took.Round(time.Millisecond), sent, float64(sent)/float64(n), used.Round(time.Millisecond),
					float64(used.Microseconds())/float64(2*n))
				cc.stop()
				bb.stop()
				a.stop()
			}
		})
	}
}

// BenchmarkClusterUpdate: with three converged edges, K decisions learned on edge-a reach edge-b
// and edge-c by gossip. Reported: CPU per replicated update across the three edges (send, two
// receives, three cache writes) against the CPU of learning the same K decisions into one edge
// alone, measured in the same run, and the gossip octets per update.
func BenchmarkClusterUpdate(b *testing.B) {
	const k = 20_000
	for range b.N {
		// The reference: the same learns into one cache, no cluster.
		solo := start(b, "solo", key(b), nil, time.Minute)
		c0 := cpu()
		for i := range k {
			solo.store.LearnAt(record(i), time.Now())
		}
		waitEntries(b, time.Minute, k, solo)
		ref := cpu() - c0
		solo.stop()

		kk := key(b)
		a := start(b, "edge-a", kk, nil, time.Minute)
		bb := start(b, "edge-b", kk, []string{a.addr}, time.Minute)
		cc := start(b, "edge-c", kk, []string{a.addr}, time.Minute)
		for len(a.c.Members()) < 3 || len(bb.c.Members()) < 3 || len(cc.c.Members()) < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		before := payload(a, bb, cc)
		c0 = cpu()
		// 5,000 decisions a second, a busy site's Access-Accepts: bounded and paced.
		tick := time.NewTicker(time.Millisecond)
		for i := 0; i < k; {
			<-tick.C
			for j := 0; j < 5 && i < k; j++ {
				a.c.Learn(record(1_000_000 + i))
				i++
			}
		}
		tick.Stop()
		took := waitEntries(b, 2*time.Minute, k, a, bb, cc)
		used := cpu() - c0
		sent := payload(a, bb, cc) - before
		per := float64(used.Microseconds()) / k
		refPer := float64(ref.Microseconds()) / k
		b.ReportMetric(per, "cluster-cpu-µs/update")
		b.ReportMetric(refPer, "solo-cpu-µs/update")
		b.ReportMetric(per/refPer, "ratio")
		b.ReportMetric(float64(sent)/k, "bytes/update")
		b.Logf("%d updates at 5,000/s: all three edges held them %s after the last; CPU %.1f µs per update across 3 edges vs %.1f µs learned on one edge alone (ratio %.2f); %.0f gossip octets per update",
			k, took.Round(time.Millisecond), per, refPer, per/refPer, float64(sent)/k)
	}
}
