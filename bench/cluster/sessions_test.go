package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
	"mxedge/edge/cluster"
)

// sessNode is a member whose session table is replicated, with one writer as edge's tracker has:
// peers' records are queued and merged in batches.
type sessNode struct {
	*node
	table *session.Store
	q     chan session.Record
}

func (n *sessNode) ListReplica(fn func(session.Record) bool) error { return n.table.ListReplica(fn) }
func (n *sessNode) Stats() session.Stats                           { return n.table.Stats() }
func (n *sessNode) MergeQueued(r session.Record) {
	select {
	case n.q <- r:
	default:
	}
}

func startSessions(tb testing.TB, name string, k []byte, join []string) *sessNode {
	clock := cluster.NewClock(nil, 0)
	store, err := cache.Open(cache.Options{Path: filepath.Join(tb.TempDir(), "cache.db"), NoSync: true, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	var c *cluster.Cluster
	table, err := session.Open(session.Options{Path: filepath.Join(tb.TempDir(), "sessions.db"), NoSync: true, Node: name,
		Now: clock.Now, Share: func(r session.Record) { c.ShareSession(r) }})
	if err != nil {
		tb.Fatal(err)
	}
	n := &sessNode{table: table, q: make(chan session.Record, 1<<16)}
	port := freePort(tb)
	c, err = cluster.New(cluster.Options{Name: name, Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		Join: join, Keys: [][]byte{k}, Store: store, Sessions: n, Clock: clock, SyncInterval: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); store.Run(ctx) }()
	go func() { defer wg.Done(); c.Run(ctx) }()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-n.q:
				batch := []session.Record{r}
				for len(batch) < 512 && len(n.q) > 0 {
					batch = append(batch, <-n.q)
				}
				_ = table.MergeReplica(batch)
			}
		}
	}()
	n.node = &node{c: c, store: store, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); wg.Wait(); table.Close(); store.Close() }) }
	tb.Cleanup(n.stop)
	return n
}

// sessionUpdates are an Access-Accept and an Accounting Start of session i.
func sessionUpdates(i int) []session.Update {
	mac := fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
	rec := session.Record{NAS: "sw1", NASAddr: "10.0.0.2", Vendor: "cisco", Site: "hq", NASPortID: "Gi1/0/1", NASPort: 50101,
		HasNASPort: true, CallingStationID: mac, MAC: mac, UserName: "user" + mac, Method: "mab", VLAN: "41", Decider: session.DecidedCloud}
	start := rec
	start.AcctSessionID, start.FramedIP = fmt.Sprintf("S%08x", i), netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return []session.Update{{Kind: session.KindAccept, Rec: rec}, {Kind: session.KindStart, Rec: start}}
}

func waitSessions(tb testing.TB, d time.Duration, want int, ns ...*sessNode) time.Duration {
	t0 := time.Now()
	for {
		ok := true
		for _, n := range ns {
			if n.table.Stats().Entries < want {
				ok = false
			}
		}
		if ok {
			return time.Since(t0)
		}
		if time.Since(t0) > d {
			tb.Fatalf("sessions not converged within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkClusterSessions: with three edges, 5,000 sessions (an Accept and a Start each, 2,000
// writes a second in 100 ms batches as edge's tracker commits them) written on edge-a reach edge-b
// and edge-c. Reported: CPU per session write across the three edges against the CPU of the same
// writes into one table alone, measured in the same run, the replication octets per write, and
// how long after the last write both peers held every session.
func BenchmarkClusterSessions(b *testing.B) {
	const k = 5_000
	for range b.N {
		soloTable, err := session.Open(session.Options{Path: filepath.Join(b.TempDir(), "solo.db"), NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		write := func(t *session.Store) {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < k; {
				<-tick.C
				var batch []session.Update
				for j := 0; j < 100 && i < k; j++ { // 200 writes per 100 ms
					batch = append(batch, sessionUpdates(i)...)
					i++
				}
				if err := t.Apply(batch); err != nil {
					b.Fatal(err)
				}
			}
		}
		c0 := cpu()
		write(soloTable)
		ref := cpu() - c0
		soloTable.Close()

		kk := key(b)
		a := startSessions(b, "edge-a", kk, nil)
		bb := startSessions(b, "edge-b", kk, []string{a.addr})
		cc := startSessions(b, "edge-c", kk, []string{a.addr})
		for len(a.c.Members()) < 3 || len(bb.c.Members()) < 3 || len(cc.c.Members()) < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		before := payload(a.node, bb.node, cc.node)
		c0 = cpu()
		write(a.table)
		took := waitSessions(b, time.Minute, k, bb, cc)
		used := cpu() - c0
		sent := payload(a.node, bb.node, cc.node) - before
		per, refPer := float64(used.Microseconds())/(2*k), float64(ref.Microseconds())/(2*k)
		b.ReportMetric(per, "cluster-cpu-µs/write")
		b.ReportMetric(refPer, "solo-cpu-µs/write")
		b.ReportMetric(per/refPer, "ratio")
		b.ReportMetric(float64(sent)/(2*k), "bytes/write")
		st := bb.c.Status().Stats.Sessions
		b.Logf("%d sessions (%d writes at 2,000/s) on edge-a: edge-b and edge-c held all %s after the last write; CPU %.1f µs per write across 3 edges vs %.1f µs into one table alone (ratio %.2f); %.0f replication octets per write; edge-b merged %d, conflicts %d, mean lag %s",
			k, 2*k, took.Round(time.Millisecond), per, refPer, per/refPer, float64(sent)/(2*k), st.Merged, st.Conflicts, st.MeanLag.Round(time.Microsecond))
		cc.stop()
		bb.stop()
		a.stop()
	}
}
