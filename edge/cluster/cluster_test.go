package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
)

// node is one cluster member over its own cache, on loopback.
type node struct {
	c     *Cluster
	store *cache.Store
	stop  func()
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		l.Close()
		if err == nil {
			u.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

func testKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

type nodeOpt func(*Options)

func startNode(t *testing.T, name string, key []byte, join []string, opts ...nodeOpt) (*node, string) {
	t.Helper()
	clock := NewClock(nil, 0)
	store, err := cache.Open(cache.Options{Path: filepath.Join(t.TempDir(), "cache.db"), NoSync: true, Now: clock.Now,
		BatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	o := Options{Name: name, Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Join: join,
		Keys: [][]byte{key}, Store: store, Clock: clock, Site: "hq", RadSec: "127.0.0.1:2083",
		SyncInterval: 300 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, GossipInterval: 50 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(o)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); store.Run(ctx) }()
	go func() { defer wg.Done(); c.Run(ctx) }()
	n := &node{c: c, store: store}
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			store.Close()
		})
	}
	t.Cleanup(n.stop)
	return n, fmt.Sprintf("127.0.0.1:%d", port)
}

func startCluster(t *testing.T, n int, key []byte, opts ...nodeOpt) []*node {
	t.Helper()
	began := time.Now()
	first, addr := startNode(t, "edge-a", key, nil, opts...)
	nodes := []*node{first}
	for i := 1; i < n; i++ {
		nd, _ := startNode(t, fmt.Sprintf("edge-%02d", i), key, []string{addr}, opts...)
		nodes = append(nodes, nd)
	}
	// Joining takes a few gossip rounds once every node runs; how long those rounds take depends
	// on how busy the machine is (under -race with a loaded CPU, many times the idle figure). The
	// time the nodes took to start measures that, so the wait scales with it, within a bound.
	wait := min(10*time.Second+20*time.Since(began), time.Minute)
	// Each node must see all n members alive. On a loaded machine a probe that misses its timeout
	// marks a live peer suspect until this node's next direct probe of it answers (cluster.go,
	// pings), so the whole matrix is rarely all-alive at one instant; each node is therefore
	// checked until it has once seen every member alive, and keeps its pass.
	seen := make([]bool, n)
	waitForState(t, wait, "all members alive", func() (bool, string) {
		var behind []string
		for i, nd := range nodes {
			if seen[i] {
				continue
			}
			ms := nd.c.Members()
			if len(alive(ms)) == n {
				seen[i] = true
				continue
			}
			states := map[string]int{}
			for _, m := range ms {
				states[m.State]++
			}
			behind = append(behind, fmt.Sprintf("%s knows %d: %v", nd.c.opts.Name, len(ms), states))
		}
		return len(behind) == 0, strings.Join(behind, ", ")
	})
	return nodes
}

func alive(ms []Member) []Member {
	var out []Member
	for _, m := range ms {
		if m.State == "alive" {
			out = append(out, m)
		}
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForState(t, d, what, func() (bool, string) { return cond(), "" })
}

// waitForState is waitFor whose condition also says what it last saw, for the failure message.
func waitForState(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (%s)", d.Round(time.Millisecond), what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mab(i int, vlan string) cache.Record {
	mac := fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
	return cache.Record{MAC: mac, Identity: strings.ReplaceAll(mac, ":", ""), Method: cache.MethodMAB, NAS: "sw1", Site: "hq",
		Attrs: []cache.Attr{{Type: 81, Value: []byte(vlan)}}}
}

func lookupVLAN(t *testing.T, s *cache.Store, mac string) (string, time.Time, bool) {
	t.Helper()
	r, ok, err := s.LookupMAB(mac)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "", time.Time{}, false
	}
	for _, a := range r.Attrs {
		if a.Type == 81 {
			return string(a.Value), r.LastAuthorized, true
		}
	}
	return "", r.LastAuthorized, true
}

// A decision learned on one edge is served by every other, within gossip time.
func TestClusterReplicatesLearnAndForget(t *testing.T) {
	nodes := startCluster(t, 3, testKey(t))
	a, b, c := nodes[0], nodes[1], nodes[2]
	for i := range 50 {
		a.c.Learn(mab(i, "10"))
	}
	r := mab(7, "")
	waitFor(t, 5*time.Second, "50 records on b and c", func() bool {
		for _, nd := range []*node{b, c} {
			for i := range 50 {
				if _, _, ok := lookupVLAN(t, nd.store, mab(i, "").MAC); !ok {
					return false
				}
			}
		}
		return true
	})
	_, atA, _ := lookupVLAN(t, a.store, r.MAC)
	_, atC, _ := lookupVLAN(t, c.store, r.MAC)
	if !atA.Equal(atC) {
		t.Fatalf("stamps differ: a %v, c %v", atA, atC)
	}

	// A Reject seen on b forgets the client everywhere.
	b.c.ForgetMAB(r.MAC)
	waitFor(t, 5*time.Second, "record 7 forgotten on a and c", func() bool {
		_, _, okA := lookupVLAN(t, a.store, r.MAC)
		_, _, okC := lookupVLAN(t, c.store, r.MAC)
		return !okA && !okC
	})
	// A later Accept wins over the earlier Reject.
	c.c.Learn(mab(7, "20"))
	waitFor(t, 5*time.Second, "record 7 back on a with VLAN 20", func() bool {
		v, _, ok := lookupVLAN(t, a.store, r.MAC)
		return ok && v == "20"
	})
	if st := a.c.Status(); st.Stats.Merged == 0 || st.Stats.Malformed != 0 {
		t.Fatalf("a's counters: %+v", st.Stats)
	}
}

// An edge that joins late, or that missed gossip, gets everything by anti-entropy.
func TestClusterAntiEntropy(t *testing.T) {
	key := testKey(t)
	a, addr := startNode(t, "edge-a", key, nil)
	// Written to a's store directly, as learned before the cluster existed: never gossiped.
	var recs []cache.Record
	for i := range 2000 {
		r := mab(i, "30")
		r.LastAuthorized = time.Now().Add(-time.Duration(i) * time.Millisecond)
		recs = append(recs, r)
	}
	if rep, err := a.store.Merge(recs); err != nil || rep.Merged != 2000 {
		t.Fatalf("seed: %+v %v", rep, err)
	}
	b, _ := startNode(t, "edge-b", key, []string{addr})
	waitFor(t, 15*time.Second, "2000 records on b", func() bool {
		return b.store.Stats().Entries == 2000
	})
	for _, i := range []int{0, 999, 1999} {
		_, atA, _ := lookupVLAN(t, a.store, mab(i, "").MAC)
		_, atB, ok := lookupVLAN(t, b.store, mab(i, "").MAC)
		if !ok || !atA.Equal(atB) {
			t.Fatalf("record %d: a %v, b %v (%v)", i, atA, atB, ok)
		}
	}
	if st := b.c.Status(); st.Stats.BucketsPulled == 0 {
		t.Fatalf("b pulled no bucket: %+v", st.Stats)
	}
}

// Concurrent decisions for one client on two edges converge to the same record everywhere.
func TestClusterConflictConverges(t *testing.T) {
	nodes := startCluster(t, 3, testKey(t))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				nd.c.Learn(mab(1, fmt.Sprint(100+i)))
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "one winner everywhere", func() bool {
		v0, at0, ok := lookupVLAN(t, nodes[0].store, mab(1, "").MAC)
		if !ok {
			return false
		}
		for _, nd := range nodes[1:] {
			v, at, ok := lookupVLAN(t, nd.store, mab(1, "").MAC)
			if !ok || v != v0 || !at.Equal(at0) {
				return false
			}
		}
		return true
	})
}

// A forgotten record cannot come back from an edge that missed the forget.
func TestClusterTombstoneBeatsStaleCopy(t *testing.T) {
	key := testKey(t)
	a, addr := startNode(t, "edge-a", key, nil)
	r := mab(5, "40")
	r.LastAuthorized = time.Now().Add(-time.Minute)
	if _, err := a.store.Merge([]cache.Record{r}); err != nil {
		t.Fatal(err)
	}
	b, _ := startNode(t, "edge-b", key, []string{addr})
	waitFor(t, 10*time.Second, "b has the record", func() bool {
		_, _, ok := lookupVLAN(t, b.store, r.MAC)
		return ok
	})
	// b forgets while a keeps its copy (written directly, as if a had missed the forget).
	b.c.ForgetMAB(r.MAC)
	time.Sleep(100 * time.Millisecond)
	if _, err := a.store.Merge([]cache.Record{r}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the record gone on a and still gone on b", func() bool {
		_, _, okA := lookupVLAN(t, a.store, r.MAC)
		_, _, okB := lookupVLAN(t, b.store, r.MAC)
		return !okA && !okB
	})
	// Several sync rounds later it is still gone.
	time.Sleep(time.Second)
	if _, _, ok := lookupVLAN(t, b.store, r.MAC); ok {
		t.Fatal("the forgotten record came back to b")
	}
}

// An edge with another key can neither join nor read.
func TestClusterWrongKeyCannotJoin(t *testing.T) {
	nodes := startCluster(t, 2, testKey(t))
	addr := nodes[0].c.ml.LocalNode().Address()
	intruder, _ := startNode(t, "intruder", testKey(t), nil)
	n, err := intruder.c.ml.Join([]string{addr})
	if err == nil || n != 0 {
		t.Fatalf("join with a wrong key: %d joined, err %v", n, err)
	}
	nodes[0].c.Learn(mab(3, "50"))
	time.Sleep(time.Second)
	if got := len(nodes[0].c.Members()); got != 2 {
		t.Fatalf("members after the intruder tried: %d", got)
	}
	if _, _, ok := lookupVLAN(t, intruder.store, mab(3, "").MAC); ok {
		t.Fatal("the intruder received a record")
	}
	if len(intruder.c.Members()) != 1 {
		t.Fatalf("the intruder sees %v", intruder.c.Members())
	}
}

// Each member publishes whether it reaches the cloud; peers see the change.
func TestClusterCloudReachability(t *testing.T) {
	key := testKey(t)
	var mu sync.Mutex
	up := false
	a, addr := startNode(t, "edge-a", key, nil, func(o *Options) {
		o.ReachesCloud = func() bool { mu.Lock(); defer mu.Unlock(); return up }
	})
	b, _ := startNode(t, "edge-b", key, []string{addr})
	waitFor(t, 5*time.Second, "two members", func() bool { return len(b.c.Members()) == 2 })
	if len(b.c.CloudPeers()) != 0 {
		t.Fatalf("cloud peers before: %v", b.c.CloudPeers())
	}
	mu.Lock()
	up = true
	mu.Unlock()
	waitFor(t, 5*time.Second, "b sees a reach the cloud", func() bool {
		p := b.c.CloudPeers()
		return len(p) == 1 && p[0].Name == "edge-a" && p[0].RadSec == "127.0.0.1:2083" && p[0].Site == "hq"
	})
	_ = a
}

// A stamp far ahead of this edge's clock is refused, not let to drag the clock forward.
func TestClockSkewRefused(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	c := NewClock(func() time.Time { return base }, time.Minute)
	t1 := c.Now()
	t2 := c.Now()
	if !t2.After(t1) || t1.Before(base) {
		t.Fatalf("not monotonic: %v %v", t1, t2)
	}
	if !c.Observe(base.Add(30 * time.Second)) {
		t.Fatal("30s ahead refused")
	}
	if got := c.Now(); !got.After(base.Add(30 * time.Second)) {
		t.Fatalf("Now after Observe: %v", got)
	}
	if c.Observe(base.Add(2 * time.Minute)) {
		t.Fatal("2 minutes ahead accepted")
	}
	if got := c.Now(); got.After(base.Add(31 * time.Second)) {
		t.Fatalf("a refused stamp moved the clock: %v", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	store := &cache.Store{}
	clock := NewClock(nil, 0)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Store: store, Clock: clock}, "no key"},
		{Options{Keys: [][]byte{make([]byte, 10)}, Store: store, Clock: clock}, "10 octets"},
		{Options{Keys: [][]byte{make([]byte, 16)}, Join: []string{"10.0.0.1"}, Store: store, Clock: clock}, "host:port"},
		{Options{Keys: [][]byte{make([]byte, 16)}}, "store and a clock"},
	} {
		err := tc.o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestWireRoundTrip(t *testing.T) {
	r := mab(9, "60")
	r.LastAuthorized = time.Unix(1_800_000_000, 123)
	for _, e := range []entry{
		{rec: r},
		{forget: true, tomb: tombstone{Method: cache.MethodMAB, MAC: "02:00:00:00:00:09", At: time.Unix(1_800_000_001, 5)}},
		{forget: true, tomb: tombstone{Method: cache.MethodEAPTLS, Identity: "alice@example.com", At: time.Unix(1_800_000_002, 0)}},
	} {
		b, err := encodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		m, err := decode(b)
		if err != nil || len(m.entries) != 1 {
			t.Fatalf("decode: %v %+v", err, m)
		}
		got := m.entries[0]
		if got.forget != e.forget || !got.tomb.At.Equal(e.tomb.At) || got.tomb.MAC != e.tomb.MAC ||
			got.tomb.Identity != e.tomb.Identity || (!e.forget && !got.rec.LastAuthorized.Equal(r.LastAuthorized)) {
			t.Fatalf("round trip: %+v, want %+v", got, e)
		}
	}
	d := &digest{node: "edge-a"}
	d.add("k1", time.Unix(1, 0))
	m, err := decode(encodeState(d))
	if err != nil || m.state.node != "edge-a" || m.state.buckets != d.buckets {
		t.Fatalf("state: %v", err)
	}
	m, err = decode(encodeWant("edge-b", []uint16{0, 7, 255}))
	if err != nil || m.node != "edge-b" || len(m.buckets) != 3 || m.buckets[2] != 255 {
		t.Fatalf("want: %v %+v", err, m)
	}
	sr := session.Record{ID: 3, NAS: "nas", State: session.StateActive, MAC: "02:00:00:00:00:09", Origin: "edge-a", OriginID: 3,
		Edge: "edge-b", AdmittedBy: "edge-a", Stamp: time.Unix(1_800_000_003, 7).UTC(), Reconcile: session.ReconcileDone}
	b, err := encodeEntry(entry{sess: &sr})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := decode(b); err != nil || len(m.entries) != 1 || m.entries[0].sess == nil || !reflect.DeepEqual(*m.entries[0].sess, sr) {
		t.Fatalf("session round trip: %v %+v", err, m)
	}
	for _, bad := range [][]byte{nil, {1}, {2, msgLearn}, {1, 99}, {1, msgWant, 0, 1, 1, 0}, append(encodeWant("x", nil), 0)} {
		if _, err := decode(bad); err == nil {
			t.Errorf("decode(%x) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r := mab(1, "10")
	r.LastAuthorized = time.Unix(1_800_000_000, 0)
	learn, _ := encodeEntry(entry{rec: r})
	forget, _ := encodeEntry(entry{forget: true, tomb: tombstone{Method: cache.MethodMAB, MAC: "02:00:00:00:00:01", At: time.Unix(1, 0)}})
	sess, _ := encodeEntry(entry{sess: &session.Record{ID: 3, NAS: "nas", State: session.StateActive, Origin: "edge-a", OriginID: 3,
		Stamp: time.Unix(1_800_000_003, 0)}})
	f.Add(learn)
	f.Add(forget)
	f.Add(sess)
	f.Add(append(append([]byte{wireVersion, msgChanges, 2}, sess[1:]...), learn[1:]...))
	f.Add(encodeState(&digest{node: "n"}))
	f.Add(encodeWant("n", []uint16{1, 2}))
	batch := append([]byte{wireVersion, msgBatch, 2}, learn[1:]...)
	batch = append(batch, forget[1:]...)
	f.Add(batch)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		for _, e := range m.entries {
			enc, err := encodeEntry(e)
			if err != nil {
				t.Fatalf("decoded entry does not encode: %v", err)
			}
			m2, err := decode(enc)
			if err != nil || len(m2.entries) != 1 {
				t.Fatalf("re-decode: %v", err)
			}
			e2 := m2.entries[0]
			if e.sess != nil {
				if e2.sess == nil || !reflect.DeepEqual(*e.sess, *e2.sess) {
					t.Fatalf("session changed on re-encode: %+v %+v", e.sess, e2.sess)
				}
				continue
			}
			if e.forget {
				if e2.tomb != e.tomb {
					t.Fatalf("tombstone changed: %+v %+v", e.tomb, e2.tomb)
				}
				continue
			}
			a, _ := cache.MarshalRecord(e.rec)
			b, _ := cache.MarshalRecord(e2.rec)
			if !bytes.Equal(a, b) {
				t.Fatal("record changed on re-encode")
			}
		}
	})
}

// Sixteen edges: everyone sees everyone, and one decision reaches all of them.
func TestCluster16(t *testing.T) {
	nodes := startCluster(t, 16, testKey(t), func(o *Options) { o.ProbeInterval = DefaultProbeInterval })
	nodes[7].c.Learn(mab(4242, "70"))
	nodes[12].c.ForgetMAB(mab(4243, "").MAC) // a forget for a client nobody holds: harmless
	waitFor(t, 10*time.Second, "the decision on all 16 edges", func() bool {
		for _, nd := range nodes {
			if v, _, ok := lookupVLAN(t, nd.store, mab(4242, "").MAC); !ok || v != "70" {
				return false
			}
		}
		return true
	})
}

// tableWriter is the session table's one writer as edge's tracker is: peers' records are queued
// (never blocking the cluster's worker) and merged in batches.
type tableWriter struct {
	s *session.Store
	q chan session.Record
}

func (w *tableWriter) ListReplica(fn func(session.Record) bool) error { return w.s.ListReplica(fn) }
func (w *tableWriter) Stats() session.Stats                           { return w.s.Stats() }
func (w *tableWriter) MergeQueued(r session.Record) {
	select {
	case w.q <- r:
	default:
	}
}

func (w *tableWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-w.q:
			batch := []session.Record{r}
			for len(batch) < 256 && len(w.q) > 0 {
				batch = append(batch, <-w.q)
			}
			_ = w.s.MergeReplica(batch)
		}
	}
}

// sessNode is a member over a cache and a session table.
type sessNode struct {
	*node
	table *session.Store
}

// startSessionNode starts a member whose session table is shared; seed writes to the table
// before the member exists (so those records are never gossiped, only found by anti-entropy).
func startSessionNode(t *testing.T, name string, key []byte, join []string, seed func(*session.Store), opts ...nodeOpt) (*sessNode, string) {
	t.Helper()
	var share func(session.Record) // the member's ShareSession, once it exists
	sn := &sessNode{}
	opts = append(opts, func(o *Options) {
		table, err := session.Open(session.Options{Path: filepath.Join(t.TempDir(), "sessions.db"), NoSync: true, Node: name,
			Now: o.Clock.Now, Share: func(r session.Record) {
				if share != nil {
					share(r)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { table.Close() })
		if seed != nil {
			seed(table)
		}
		w := &tableWriter{s: table, q: make(chan session.Record, 4096)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		o.Sessions, sn.table = w, table
	})
	n, addr := startNode(t, name, key, join, opts...)
	share = n.c.ShareSession
	sn.node = n
	return sn, addr
}

func sessAccept(mac string, d session.Decider) session.Update {
	return session.Update{Kind: session.KindAccept, Rec: session.Record{NAS: "nas", NASAddr: "198.18.10.100", Site: "hq",
		CallingStationID: mac, MAC: mac, UserName: "alice", Method: "mab", VLAN: "41", Decider: d}}
}

func sessAcct(k session.Kind, mac, asid string) session.Update {
	return session.Update{Kind: k, Rec: session.Record{NAS: "nas", NASAddr: "198.18.10.100", MAC: mac, CallingStationID: mac,
		AcctSessionID: asid, FramedIP: netip.MustParseAddr("10.9.0.7")}}
}

func findMAC(t *testing.T, s *session.Store, mac string) (session.Record, bool) {
	t.Helper()
	rs, err := s.Find(session.Query{MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		return session.Record{}, false
	}
	if len(rs) > 1 {
		t.Fatalf("%d sessions of %s, want one record per session: %+v", len(rs), mac, rs)
	}
	return rs[0], true
}

// A session written on one edge is on every edge within gossip time; a Stop another edge saw
// for it ends it everywhere, and so does the reconciled mark.
func TestClusterReplicatesSessions(t *testing.T) {
	key := testKey(t)
	a, addr := startSessionNode(t, "edge-a", key, nil, nil)
	b, _ := startSessionNode(t, "edge-b", key, []string{addr}, nil)
	c, _ := startSessionNode(t, "edge-c", key, []string{addr}, nil)
	waitFor(t, 10*time.Second, "three members", func() bool { return len(alive(c.c.Members())) == 3 && len(alive(a.c.Members())) == 3 })
	const mac = "02:00:00:00:00:01"
	if err := a.table.Apply([]session.Update{sessAccept(mac, session.DecidedCache), sessAcct(session.KindStart, mac, "S1")}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	waitFor(t, 5*time.Second, "edge-a's session on edge-c", func() bool {
		r, ok := findMAC(t, c.table, mac)
		return ok && r.State == session.StateActive && r.AcctSessionID == "S1"
	})
	t.Logf("a session written on edge-a was on edge-c %v later", time.Since(t0).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "on edge-b", func() bool { _, ok := findMAC(t, b.table, mac); return ok })
	if err := b.table.Apply([]session.Update{sessAcct(session.KindStop, mac, "S1")}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*sessNode{a, c} {
		waitFor(t, 5*time.Second, "edge-b's Stop everywhere", func() bool {
			r, ok := findMAC(t, nd.table, mac)
			return ok && r.State == session.StateStopped && r.Edge == "edge-b" && r.UserName == "alice"
		})
	}
	// Reconciliation's mark, on a live session admitted locally by edge-b.
	const mac2 = "02:00:00:00:00:02"
	if err := b.table.Apply([]session.Update{sessAccept(mac2, session.DecidedDefault)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "edge-b's admission on edge-a", func() bool {
		r, ok := findMAC(t, a.table, mac2)
		return ok && r.Reconcile == session.ReconcileNeeded && r.AdmittedBy == "edge-b"
	})
	r, _ := findMAC(t, b.table, mac2)
	if err := b.table.MarkReconciled(r.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*sessNode{a, c} {
		waitFor(t, 5*time.Second, "the reconciled mark everywhere", func() bool {
			n, _ := nd.table.NeedingReconcile(0)
			r, _ := findMAC(t, nd.table, mac2)
			return len(n) == 0 && r.Reconcile == session.ReconcileDone
		})
	}
	st := a.c.Status().Stats.Sessions
	if st.Sent != 1 || st.Received < 3 || st.Merged < 3 { // the Accept and Start of one batch are one record
		t.Fatalf("edge-a's session counters %+v", st)
	}
}

// Session records never gossiped (written before the member started) reach a new edge by
// anti-entropy, and a stale copy a rejoining edge holds (the session live) loses to the newer Stop.
func TestClusterSessionAntiEntropy(t *testing.T) {
	key := testKey(t)
	var stale session.Record
	a, addr := startSessionNode(t, "edge-a", key, nil, func(s *session.Store) {
		var us []session.Update
		for i := range 300 {
			mac := fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)
			us = append(us, sessAccept(mac, session.DecidedCloud), sessAcct(session.KindStart, mac, fmt.Sprintf("S%d", i)))
		}
		if err := s.Apply(us); err != nil {
			t.Fatal(err)
		}
		stale, _ = findMAC(t, s, "02:00:00:00:00:07")
		if err := s.Apply([]session.Update{sessAcct(session.KindStop, "02:00:00:00:00:07", "S7")}); err != nil {
			t.Fatal(err)
		}
	})
	b, _ := startSessionNode(t, "edge-b", key, []string{addr}, func(s *session.Store) {
		if err := s.MergeReplica([]session.Record{stale}); err != nil { // the copy it held before
			t.Fatal(err)
		}
	})
	waitFor(t, 15*time.Second, "edge-b holds edge-a's 300 sessions, 7 stopped", func() bool {
		r, _ := findMAC(t, b.table, "02:00:00:00:00:07")
		return b.table.Stats().Entries == 300 && r.State == session.StateStopped
	})
	if r, _ := findMAC(t, a.table, "02:00:00:00:00:07"); r.State != session.StateStopped {
		t.Fatalf("the stale copy brought edge-a's stopped session back: %+v", r)
	}
	if st := b.c.Status().Stats; st.BucketsPulled == 0 || st.Sessions.Merged == 0 {
		t.Fatalf("edge-b's counters %+v", st)
	}
	if st := a.c.Status().Stats.Sessions; st.SyncSent == 0 {
		t.Fatalf("edge-a sent no session in a sync answer: %+v", st)
	}
}

// A tombstone outlives a restart of the edge that holds it (so a partitioned peer's stale copy
// cannot come back after it), and is dropped once older than the tombstone TTL.
func TestClusterTombstoneSurvivesRestart(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "cluster.db")
	withState := func(o *Options) { o.StatePath = path }
	a, _ := startNode(t, "edge-a", key, nil, withState)
	r := mab(9, "60")
	r.LastAuthorized = time.Now().Add(-time.Minute)
	a.c.ForgetMAB(r.MAC)
	a.stop() // Run returns after the tombstones are written
	a2, _ := startNode(t, "edge-a", key, nil, withState)
	if got := a2.c.Status().Stats.Tombstones; got != 1 {
		t.Fatalf("after a restart %d tombstones, want 1", got)
	}
	if !a2.c.buried(r) {
		t.Fatal("the record forgotten before the restart is no longer refused")
	}
	// A peer that still holds the stale copy offers it: refused.
	a2.c.merge([]entry{{rec: r}})
	if _, _, ok := lookupVLAN(t, a2.store, r.MAC); ok {
		t.Fatal("the stale copy came back after the restart")
	}
	a2.stop()
	time.Sleep(20 * time.Millisecond)
	a3, _ := startNode(t, "edge-a", key, nil, withState, func(o *Options) { o.TombstoneTTL = 10 * time.Millisecond })
	if got := a3.c.Status().Stats.Tombstones; got != 0 {
		t.Fatalf("a tombstone older than its TTL was loaded (%d)", got)
	}
}
