package session

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sharer keeps what Share was told.
type sharer struct {
	mu  sync.Mutex
	got []Record
}

func (s *sharer) share(r Record) { s.mu.Lock(); s.got = append(s.got, r); s.mu.Unlock() }

func (s *sharer) take() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.got
	s.got = nil
	return g
}

// keeper is a recorder that also keeps the last record told.
type keeper struct {
	recorder
	last *Record
}

func (k *keeper) SessionChanged(c Change, prev, cur *Record) {
	k.recorder.SessionChanged(c, prev, cur)
	k.mu.Lock()
	k.last = cur
	k.mu.Unlock()
}

// edgeStore is one edge's table in a cluster named node.
func edgeStore(t *testing.T, node string, c *clock, rec Observer) (*Store, *sharer) {
	sh := &sharer{}
	s := openTest(t, filepath.Join(t.TempDir(), node+".db"), c, func(o *Options) {
		o.Node, o.Share, o.Observer = node, sh.share, rec
	})
	return s, sh
}

func TestReplicaFieldsAndShare(t *testing.T) {
	c := &clock{t: t0}
	rec := &recorder{}
	a, sh := edgeStore(t, "edge-a", c, rec)
	const mac = "02:00:00:00:00:01"
	apply(t, a, accept("sw1", mac, "alice", DecidedCache, t0))
	got := sh.take()
	if len(got) != 1 {
		t.Fatalf("shared %d records, want 1", len(got))
	}
	r := got[0]
	if r.Origin != "edge-a" || r.OriginID != r.ID || r.Edge != "edge-a" || r.AdmittedBy != "edge-a" || !r.Stamp.Equal(t0) ||
		r.Reconcile != ReconcileNeeded {
		t.Fatalf("shared record %+v", r)
	}
	// The same packet twice at the same clock: the second write is still stamped later.
	apply(t, a, acct(KindInterim, "sw1", mac, "S1", t0))
	if r2 := sh.take(); len(r2) != 1 || !r2[0].Stamp.After(r.Stamp) {
		t.Fatalf("second write's stamp %v, not after %v", r2, r.Stamp)
	}
	if err := a.MarkReconciled(r.ID, true); err != nil {
		t.Fatal(err)
	}
	if r3 := sh.take(); len(r3) != 1 || r3[0].Reconcile != ReconcileDone {
		t.Fatalf("reconciled mark not shared: %+v", r3)
	}
	if n := len(rec.take()); n != 3 {
		t.Fatalf("observer told %d changes, want 3", n)
	}
}

// TestReplicaMergeOnPeer: a record written on edge-a reaches edge-c whole, under a local ID of
// its own; the peer's observer is not told (edge-a's told its own), and a Stop edge-c's NAS
// reports later for it updates that record (the identity event joins with what edge-a saw).
func TestReplicaMergeOnPeer(t *testing.T) {
	c := &clock{t: t0}
	a, ash := edgeStore(t, "edge-a", c, nil)
	crec := &keeper{}
	cs, csh := edgeStore(t, "edge-c", c, crec)
	apply(t, cs, accept("sw9", "02:00:00:00:00:09", "other", DecidedCloud, t0)) // edge-c's ID 1 is taken
	csh.take()
	crec.take()
	const mac = "02:00:00:00:00:01"
	apply(t, a, accept("sw1", mac, "alice", DecidedCloud, t0), acct(KindStart, "sw1", mac, "S1", t0))
	shared := ash.take()
	if len(shared) != 1 || shared[0].State != StateActive {
		t.Fatalf("an Accept and its Start in one batch shared as %d records, want the last state once: %+v", len(shared), shared)
	}
	if err := cs.MergeReplica(shared); err != nil {
		t.Fatal(err)
	}
	r := one(t, cs, Query{AcctSessionID: "S1", NAS: "sw1"})
	if r.Origin != "edge-a" || r.OriginID != 1 || r.ID == 1 || r.UserName != "alice" || r.State != StateActive ||
		r.FramedIP.String() != "10.9.0.7" {
		t.Fatalf("merged on edge-c: %+v", r)
	}
	if g := crec.take(); len(g) != 0 {
		t.Fatalf("edge-c's observer told of a merge: %v", g)
	}
	if g := csh.take(); len(g) != 0 {
		t.Fatalf("edge-c shared a merged record back: %+v", g)
	}
	if st := cs.Stats(); st.MergeWon != 1 || st.Live != 2 {
		t.Fatalf("edge-c stats %+v", st)
	}
	c.add(time.Minute)
	stop := acct(KindStop, "sw1", mac, "S1", c.now())
	stop.Rec.UserName = "" // accounting often lacks what the Accept had
	apply(t, cs, stop)
	g := crec.take()
	if len(g) != 1 || !strings.HasPrefix(g[0], "ended") {
		t.Fatalf("edge-c's observer on the Stop: %v", g)
	}
	// What identity push gets from edge-c's Stop is edge-a's session: the user, VLAN and method
	// edge-a's Accept brought (the Stop carries none of them).
	if e := crec.last; e == nil || e.UserName != "alice" || e.VLAN != "41" || e.Method != "mab" || e.Origin != "edge-a" {
		t.Fatalf("the ended session told to edge-c's observer: %+v", e)
	}
	r = one(t, cs, Query{AcctSessionID: "S1", NAS: "sw1"})
	if r.State != StateStopped || r.UserName != "alice" || r.Origin != "edge-a" || r.Edge != "edge-c" || r.AdmittedBy != "edge-a" {
		t.Fatalf("Stop on edge-c: %+v", r)
	}
	// Back on edge-a, edge-c's Stop replaces its copy.
	if err := a.MergeReplica(csh.take()); err != nil {
		t.Fatal(err)
	}
	if r := one(t, a, Query{ID: 1}); r.State != StateStopped || r.Edge != "edge-c" {
		t.Fatalf("edge-a after edge-c's Stop: %+v", r)
	}
}

// TestReplicaLWW: copies of one record in any order end the same on every edge; a stale copy
// never undoes a newer Stop; an equal stamp is broken by the encoding.
func TestReplicaLWW(t *testing.T) {
	c := &clock{t: t0}
	a, ash := edgeStore(t, "edge-a", c, nil)
	const mac = "02:00:00:00:00:01"
	apply(t, a, accept("sw1", mac, "alice", DecidedCloud, t0), acct(KindStart, "sw1", mac, "S1", t0))
	ash.take()
	base := one(t, a, Query{ID: 1})
	interim := base
	interim.State, interim.InputOctets, interim.Stamp, interim.Edge = StateActive, 5000, t0.Add(time.Second), "edge-b"
	stop := base
	stop.State, stop.Stopped, stop.Stamp, stop.Edge = StateStopped, t0.Add(2*time.Second), t0.Add(2*time.Second), "edge-c"
	stop.Expires = stop.Stopped.Add(5 * time.Minute)
	tieA, tieB := base, base
	tieA.Stamp, tieB.Stamp = t0.Add(3*time.Second), t0.Add(3*time.Second)
	tieA.VLAN, tieB.VLAN = "10", "20"
	for _, tt := range []struct {
		name   string
		copies []Record
		check  func(Record) bool
	}{
		{"stale copy after a newer stop", []Record{stop, interim}, func(r Record) bool { return r.State == StateStopped && r.Edge == "edge-c" }},
		{"newer stop after a stale copy", []Record{interim, stop}, func(r Record) bool { return r.State == StateStopped && r.Edge == "edge-c" }},
		{"tie one way", []Record{tieA, tieB}, func(r Record) bool { return r.VLAN == "20" }},
		{"tie other way", []Record{tieB, tieA}, func(r Record) bool { return r.VLAN == "20" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, order := range [][]int{{0, 1}, {1, 0}} {
				b, _ := edgeStore(t, "edge-b", c, nil)
				for _, i := range order {
					if err := b.MergeReplica([]Record{tt.copies[i]}); err != nil {
						t.Fatal(err)
					}
				}
				r := one(t, b, Query{MAC: mac})
				if !tt.check(r) {
					t.Fatalf("order %v: %+v", order, r)
				}
			}
		})
	}
	// The losing copy is counted, not written.
	b, _ := edgeStore(t, "edge-b", c, nil)
	if err := b.MergeReplica([]Record{stop, interim}); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.MergeWon != 1 || st.MergeLost != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestReplicaReconciledMarkSurvives: edge-a reconciles a session; edge-b, which had not yet seen
// the mark, writes an Interim-Update later from its copy. Merged both ways, the session stays
// reconciled everywhere (it is not re-authorized twice), with edge-b's counters.
func TestReplicaReconciledMarkSurvives(t *testing.T) {
	c := &clock{t: t0}
	a, ash := edgeStore(t, "edge-a", c, nil)
	b, bsh := edgeStore(t, "edge-b", c, nil)
	const mac = "02:00:00:00:00:01"
	apply(t, a, accept("sw1", mac, "alice", DecidedDefault, t0), acct(KindStart, "sw1", mac, "S1", t0))
	if err := b.MergeReplica(ash.take()); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if err := a.MarkReconciled(1, true); err != nil {
		t.Fatal(err)
	}
	mark := ash.take()
	c.add(time.Second)
	in := acct(KindInterim, "sw1", mac, "S1", c.now())
	in.Rec.InputOctets = 9999
	apply(t, b, in)
	interim := bsh.take()
	if len(interim) != 1 || interim[0].Reconcile != ReconcileNeeded {
		t.Fatalf("edge-b's interim %+v", interim)
	}
	if err := b.MergeReplica(mark); err != nil {
		t.Fatal(err)
	}
	if err := a.MergeReplica(interim); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"edge-a": a, "edge-b": b} {
		r := one(t, s, Query{MAC: mac})
		if r.Reconcile != ReconcileDone || r.InputOctets != 9999 || r.ReconcileAttempts != 1 {
			t.Errorf("%s: reconcile %v, input %d, attempts %d", name, r.Reconcile, r.InputOctets, r.ReconcileAttempts)
		}
		if n, _ := s.NeedingReconcile(0); len(n) != 0 {
			t.Errorf("%s still lists %d sessions needing reconciliation", name, len(n))
		}
		if st := s.Stats(); st.NeedReconcile != 0 {
			t.Errorf("%s counts %d needing reconciliation", name, st.NeedReconcile)
		}
	}
}

// TestReplicaRefusesExpired: a copy that has expired (every edge swept it) is not brought back.
func TestReplicaRefusesExpired(t *testing.T) {
	c := &clock{t: t0}
	a, ash := edgeStore(t, "edge-a", c, nil)
	apply(t, a, accept("sw1", "02:00:00:00:00:01", "alice", DecidedCloud, t0))
	old := ash.take()
	c.add(time.Hour)
	b, _ := edgeStore(t, "edge-b", c, nil)
	if err := b.MergeReplica(old); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Entries != 0 || st.MergeRefused != 1 {
		t.Fatalf("expired copy: %+v", st)
	}
}

// TestListReplica: records written before the edge joined a cluster are listed under its name.
func TestListReplica(t *testing.T) {
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, c, nil)
	apply(t, s, accept("sw1", "02:00:00:00:00:01", "alice", DecidedCloud, t0))
	s.Close()
	s = openTest(t, path, c, func(o *Options) { o.Node = "edge-a" })
	var got []Record
	if err := s.ListReplica(func(r Record) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Origin != "edge-a" || got[0].OriginID != got[0].ID || !got[0].Stamp.Equal(t0) {
		t.Fatalf("listed %+v", got)
	}
	// A peer's copy of it merges into the same record, not a second one.
	cp := got[0]
	cp.Stamp, cp.VLAN = t0.Add(time.Second), "77"
	if err := s.MergeReplica([]Record{cp}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Fatalf("entries %d after merging its own record back", st.Entries)
	}
	if r := one(t, s, Query{ID: got[0].ID}); r.VLAN != "77" {
		t.Fatalf("merged %+v", r)
	}
}

func replicaSample() Record {
	r := sampleRecord()
	r.Origin, r.OriginID, r.Edge, r.AdmittedBy, r.Stamp = "edge-a", 42, "edge-b", "edge-a", t0.Add(2*time.Hour)
	return r
}

func TestReplicaRoundTrip(t *testing.T) {
	r := replicaSample()
	b, err := MarshalReplica(r)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != codecV2 {
		t.Fatalf("replica encoded as version %d", b[0])
	}
	got, err := UnmarshalReplica(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
	plain, _ := appendRecord(nil, ptr(sampleRecord()))
	if plain[0] != codecV1 {
		t.Fatalf("a record without replication fields encoded as version %d, want 1", plain[0])
	}
	if _, err := UnmarshalReplica(plain); err == nil {
		t.Fatal("a record without origin accepted as a replica")
	}
	bad := r
	bad.OriginID = 0
	if _, err := MarshalReplica(bad); err == nil {
		t.Fatal("origin without origin id encoded")
	}
}

// TestRecordV2Golden: a v2 record written once stays readable by every later binary.
func TestRecordV2Golden(t *testing.T) { checkRecordGolden(t, "record-v2.hex", replicaSample()) }

// TestReplicaOwnRecordBack: an edge that lost its table (a new file) gets its records back from a
// peer under their own IDs, and the sessions it creates afterwards take new IDs, never theirs.
func TestReplicaOwnRecordBack(t *testing.T) {
	c := &clock{t: t0}
	a, ash := edgeStore(t, "edge-a", c, nil)
	for i := range 5 {
		apply(t, a, accept("sw1", fmt.Sprintf("02:00:00:00:00:%02x", i), "u", DecidedCloud, t0))
	}
	shared := ash.take()
	a2, _ := edgeStore(t, "edge-a", c, nil) // the same edge with a new, empty file
	if err := a2.MergeReplica(shared[3:]); err != nil {
		t.Fatal(err)
	}
	apply(t, a2, accept("sw1", "02:00:00:00:00:99", "new", DecidedCloud, t0))
	r := one(t, a2, Query{MAC: "02:00:00:00:00:99"})
	if r.ID <= 5 || r.OriginID != r.ID {
		t.Fatalf("a new session after its records came back took ID %d (origin id %d), want above 5", r.ID, r.OriginID)
	}
	if back := one(t, a2, Query{MAC: "02:00:00:00:00:04"}); back.ID != 5 || back.Origin != "edge-a" {
		t.Fatalf("its own record came back as %+v", back)
	}
}
