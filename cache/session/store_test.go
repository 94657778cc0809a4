package session

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// recorder is an Observer that keeps every change.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) SessionChanged(c Change, prev, cur *Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := c.String()
	if prev != nil {
		s += fmt.Sprintf(" prev=%d/%s", prev.ID, prev.State)
	}
	if cur != nil {
		s += fmt.Sprintf(" cur=%d/%s", cur.ID, cur.State)
	}
	r.got = append(r.got, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

func openTest(t testing.TB, path string, c *clock, mod func(*Options)) *Store {
	t.Helper()
	o := Options{Path: path, Now: c.now, NoSync: true, StopGrace: 5 * time.Minute, MissedInterims: 3,
		DefaultInterim: 10 * time.Minute}
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t testing.TB, s *Store, us ...Update) {
	t.Helper()
	if err := s.Apply(us); err != nil {
		t.Fatal(err)
	}
}

func accept(nas, mac, user string, d Decider, at time.Time) Update {
	return Update{Kind: KindAccept, At: at, Rec: Record{NAS: nas, NASAddr: "10.0.0.1", Vendor: "cisco", Site: "hq",
		NASPort: 50101, HasNASPort: true, NASPortID: "Gi1/0/1", CalledStationID: "00-11-22-33-44-55:corp", SSID: "corp",
		CallingStationID: mac, MAC: mac, UserName: user, Method: "mab", VLAN: "41", Class: []byte("cls"), Decider: d}}
}

func acct(k Kind, nas, mac, asid string, at time.Time) Update {
	return Update{Kind: k, At: at, Rec: Record{NAS: nas, NASAddr: "10.0.0.1", Site: "hq", MAC: mac, CallingStationID: mac,
		AcctSessionID: asid, NASPort: 50101, HasNASPort: true, FramedIP: netip.MustParseAddr("10.9.0.7"),
		FramedIPv6: netip.MustParseAddr("2001:db8::7"), FramedIPv6Prefix: netip.MustParsePrefix("2001:db8:1::/64"),
		InputOctets: 1000, OutputOctets: 2000, SessionTime: 60}}
}

func one(t testing.TB, s *Store, q Query) Record {
	t.Helper()
	rs, err := s.Find(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("Find(%+v): %d sessions, want 1: %+v", q, len(rs), rs)
	}
	return rs[0]
}

func TestLifecycle(t *testing.T) {
	c := &clock{t: t0}
	rec := &recorder{}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.Observer = rec })
	const mac = "02:00:00:00:00:01"
	apply(t, s, accept("sw1", mac, "alice", DecidedCloud, t0))
	r := one(t, s, Query{MAC: mac})
	if r.State != StateAuthorized || r.Decider != DecidedCloud || r.Reconcile != ReconcileNone || r.VLAN != "41" ||
		r.SSID != "corp" || string(r.Class) != "cls" || !r.Expires.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("after accept: %+v", r)
	}
	c.add(time.Second)
	start := acct(KindStart, "sw1", mac, "ASID-1", c.now())
	start.Rec.Interim = 5 * time.Minute
	apply(t, s, start)
	r = one(t, s, Query{AcctSessionID: "ASID-1", NAS: "sw1"})
	if r.State != StateActive || r.AcctSessionID != "ASID-1" || r.UserName != "alice" || r.FramedIP.String() != "10.9.0.7" ||
		!r.Expires.Equal(c.now().Add(15*time.Minute)) {
		t.Fatalf("after start (joined to the accept by MAC): %+v", r)
	}
	// Every index finds it.
	for _, q := range []Query{{AcctSessionID: "ASID-1"}, {UserName: "ALICE"}, {IP: netip.MustParseAddr("10.9.0.7")},
		{IP: netip.MustParseAddr("2001:db8::7")}, {IP: netip.MustParseAddr("2001:db8:1::")}, {NAS: "sw1"},
		{NAS: "sw1", NASPortID: "Gi1/0/1"}, {NAS: "sw1", NASPort: 50101, HasNASPort: true}, {Site: "hq"}, {State: StateActive}} {
		if got := one(t, s, q); got.ID != r.ID {
			t.Fatalf("%+v found %d", q, got.ID)
		}
	}
	c.add(5 * time.Minute)
	in := acct(KindInterim, "sw1", mac, "ASID-1", c.now())
	in.Rec.InputOctets, in.Rec.SessionTime = 5000, 300
	apply(t, s, in)
	c.add(time.Minute)
	stop := acct(KindStop, "sw1", mac, "ASID-1", c.now())
	stop.Rec.TerminateCause, stop.Rec.InputOctets = 1, 9000
	apply(t, s, stop)
	r = one(t, s, Query{MAC: mac})
	if r.State != StateStopped || r.TerminateCause != 1 || r.InputOctets != 9000 || !r.Stopped.Equal(c.now()) ||
		!r.Expires.Equal(c.now().Add(5*time.Minute)) {
		t.Fatalf("after stop: %+v", r)
	}
	st := s.Stats()
	if st.Entries != 1 || st.Live != 0 || st.Starts != 1 || st.Stops != 1 || st.Created != 1 || len(st.Active) != 0 {
		t.Fatalf("stats: %+v", st)
	}
	// Grace: kept until Stop+grace, then swept.
	c.add(5*time.Minute - time.Second)
	if n, err := s.Sweep(); err != nil || n != 0 {
		t.Fatalf("sweep before grace: %d %v", n, err)
	}
	c.add(time.Second)
	if n, err := s.Sweep(); err != nil || n != 1 {
		t.Fatalf("sweep at grace: %d %v", n, err)
	}
	if rs, _ := s.Find(Query{}); len(rs) != 0 || s.Stats().Entries != 0 {
		t.Fatalf("left after expiry: %+v", rs)
	}
	want := []string{"created cur=1/authorized", "updated prev=1/authorized cur=1/active", "updated prev=1/active cur=1/active",
		"ended prev=1/active cur=1/stopped", "expired prev=1/stopped"}
	if got := rec.take(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observer:\n got %q\nwant %q", got, want)
	}
	checkIndexes(t, s)
}

func TestMissedInterims(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, nil)
	a := acct(KindStart, "sw1", "02:00:00:00:00:02", "A", t0)
	a.Rec.Interim = 2 * time.Minute
	b := acct(KindStart, "sw1", "02:00:00:00:00:03", "B", t0) // no interval: DefaultInterim 10m
	tiny := acct(KindStart, "sw1", "02:00:00:00:00:04", "C", t0)
	tiny.Rec.Interim = 5 * time.Second // below RFC 2869 §5.16's 60 s: raised to MinInterim
	apply(t, s, a, b, tiny)
	c.add(3*time.Minute - time.Nanosecond)
	if n, _ := s.Sweep(); n != 0 {
		t.Fatalf("swept %d before 3 missed minute intervals", n)
	}
	c.add(time.Nanosecond)
	if n, _ := s.Sweep(); n != 1 {
		t.Fatalf("swept %d at 3 missed 1m intervals, want C", n)
	}
	c.add(3 * time.Minute) // 6m: A (3×2m) goes
	if n, _ := s.Sweep(); n != 1 {
		t.Fatalf("swept %d at 6m, want A", n)
	}
	one(t, s, Query{AcctSessionID: "B"})
	// An interim moves B's deadline.
	c.add(20 * time.Minute)
	apply(t, s, acct(KindInterim, "sw1", "02:00:00:00:00:03", "B", c.now()))
	c.add(29 * time.Minute)
	if n, _ := s.Sweep(); n != 0 {
		t.Fatalf("B swept %d, 29m after its interim", n)
	}
	c.add(time.Minute)
	if n, _ := s.Sweep(); n != 1 {
		t.Fatalf("B not swept 30m after its interim: %d", n)
	}
	if st := s.Stats(); st.Expired != 3 || st.Live != 0 || st.Entries != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkIndexes(t, s)
}

func TestRestartPersists(t *testing.T) {
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, c, nil)
	apply(t, s, accept("sw1", "02:00:00:00:00:05", "bob", DecidedCache, t0),
		acct(KindStart, "sw1", "02:00:00:00:00:05", "X", t0.Add(time.Second)),
		acct(KindStart, "ap1", "02:00:00:00:00:06", "Y", t0.Add(time.Second)))
	before, _ := s.Find(Query{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, path, c, nil)
	checkIndexes(t, s2) // the MAC index is rebuilt from the records
	after, _ := s2.Find(Query{})
	if fmt.Sprintf("%+v", before) != fmt.Sprintf("%+v", after) || len(after) != 2 {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", after, before)
	}
	st := s2.Stats()
	if st.Entries != 2 || st.Live != 2 || st.NeedReconcile != 1 || len(st.Active) != 2 || st.Active[0].NAS != "ap1" {
		t.Fatalf("counts after restart: %+v", st)
	}
	// An Interim-Update without Acct-Session-Id joins the session by its MAC (match) across the
	// restart, through the rebuilt MAC index.
	u := acct(KindInterim, "sw1", "02:00:00:00:00:05", "", t0.Add(3*time.Second))
	apply(t, s2, u)
	if rs, _ := s2.Find(Query{MAC: "02:00:00:00:00:05"}); len(rs) != 1 || rs[0].AcctSessionID != "X" || !rs[0].Updated.Equal(u.At) {
		t.Fatalf("interim after restart: %+v", rs)
	}
	// IDs continue, never reused.
	apply(t, s2, acct(KindStart, "ap1", "02:00:00:00:00:07", "Z", t0.Add(2*time.Second)))
	if r := one(t, s2, Query{AcctSessionID: "Z"}); r.ID != 3 {
		t.Fatalf("new id %d, want 3", r.ID)
	}
	// The daemon holds the lock.
	if _, err := Open(Options{Path: path, OpenTimeout: 10 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestCapEvictsEndedThenIdle(t *testing.T) {
	c := &clock{t: t0}
	rec := &recorder{}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.MaxEntries = 3; o.Observer = rec })
	mac := func(i int) string { return fmt.Sprintf("02:00:00:00:01:%02x", i) }
	apply(t, s, acct(KindStart, "sw1", mac(1), "1", t0), acct(KindStart, "sw1", mac(2), "2", t0.Add(time.Second)),
		acct(KindStart, "sw1", mac(3), "3", t0.Add(2*time.Second)))
	apply(t, s, acct(KindStop, "sw1", mac(3), "3", t0.Add(3*time.Second)))
	rec.take()
	// Full: the ended session (3) goes first, though it is the newest.
	apply(t, s, acct(KindStart, "sw1", mac(4), "4", t0.Add(4*time.Second)))
	if got := rec.take(); fmt.Sprint(got) != "[evicted prev=3/stopped created cur=4/active]" {
		t.Fatalf("first eviction: %q", got)
	}
	// Then the live session silent longest (1).
	apply(t, s, acct(KindStart, "sw1", mac(5), "5", t0.Add(5*time.Second)))
	if got := rec.take(); fmt.Sprint(got) != "[evicted prev=1/active created cur=5/active]" {
		t.Fatalf("second eviction: %q", got)
	}
	if st := s.Stats(); st.Entries != 3 || st.Evicted != 2 || st.Live != 3 {
		t.Fatalf("stats %+v", st)
	}
	checkIndexes(t, s)
}

func TestReconcile(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, nil)
	mac := func(i int) string { return fmt.Sprintf("02:00:00:00:02:%02x", i) }
	apply(t, s, accept("sw1", mac(1), "", DecidedDefault, t0.Add(3*time.Second)),
		accept("sw1", mac(2), "", DecidedCache, t0.Add(1*time.Second)),
		accept("sw1", mac(3), "", DecidedCache, t0.Add(2*time.Second)),
		accept("sw1", mac(4), "", DecidedCloud, t0),
		accept("sw1", mac(5), "", DecidedPolicy, t0.Add(4*time.Second)))
	ids := func(rs []Record) (out []string) {
		for _, r := range rs {
			out = append(out, r.MAC[len(r.MAC)-2:])
		}
		return out
	}
	rs, err := s.NeedingReconcile(0)
	if err != nil || fmt.Sprint(ids(rs)) != "[02 03 01 05]" {
		t.Fatalf("needing, oldest accept first: %v %v", ids(rs), err)
	}
	if rs, _ := s.NeedingReconcile(2); fmt.Sprint(ids(rs)) != "[02 03]" {
		t.Fatalf("limit 2: %v", ids(rs))
	}
	// 02 re-authenticates through the cloud on its own; 03 ends; 01 is reconciled; 05 fails.
	apply(t, s, accept("sw1", mac(2), "", DecidedCloud, t0.Add(10*time.Second)),
		acct(KindStop, "sw1", mac(3), "s3", t0.Add(11*time.Second)))
	r1 := one(t, s, Query{MAC: mac(1)})
	if err := s.MarkReconciled(r1.ID, true); err != nil {
		t.Fatal(err)
	}
	r5 := one(t, s, Query{MAC: mac(5)})
	if err := s.MarkReconciled(r5.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkReconciled(999, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if rs, _ := s.NeedingReconcile(0); len(rs) != 0 || s.Stats().NeedReconcile != 0 {
		t.Fatalf("still needing: %v", ids(rs))
	}
	for m, want := range map[string]Reconcile{mac(1): ReconcileDone, mac(2): ReconcileSuperseded, mac(3): ReconcileSuperseded,
		mac(4): ReconcileNone, mac(5): ReconcileFailed} {
		if r := one(t, s, Query{MAC: m}); r.Reconcile != want {
			t.Errorf("%s: %v, want %v", m, r.Reconcile, want)
		}
	}
	if r := one(t, s, Query{MAC: mac(5)}); r.ReconcileAttempts != 1 || !r.ReconcileAt.Equal(t0) {
		t.Fatalf("attempts: %+v", r)
	}
	// A failed one the cloud later admits is superseded too.
	apply(t, s, accept("sw1", mac(5), "", DecidedCloud, t0.Add(time.Minute)))
	if r := one(t, s, Query{MAC: mac(5)}); r.Reconcile != ReconcileSuperseded {
		t.Fatalf("failed then cloud: %v", r.Reconcile)
	}
	checkIndexes(t, s)
}

func TestJoinRules(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, nil)
	const mac = "02:00:00:00:03:01"
	apply(t, s, accept("sw1", mac, "u", DecidedCloud, t0), acct(KindStart, "sw1", mac, "S1", t0))
	// A re-authentication updates the same live session.
	apply(t, s, accept("sw1", mac, "u", DecidedCloud, t0.Add(time.Hour)))
	if rs, _ := s.Find(Query{MAC: mac}); len(rs) != 1 || !rs[0].Authorized.Equal(t0.Add(time.Hour)) || rs[0].State != StateActive {
		t.Fatalf("re-auth: %+v", rs)
	}
	// A different Acct-Session-Id for the same MAC is another session; the same MAC at another
	// NAS too.
	apply(t, s, acct(KindStart, "sw1", mac, "S2", t0.Add(time.Hour)), acct(KindStart, "sw2", mac, "S1", t0.Add(time.Hour)))
	if rs, _ := s.Find(Query{MAC: mac}); len(rs) != 3 {
		t.Fatalf("want 3 sessions of the MAC, got %+v", rs)
	}
	if r := one(t, s, Query{AcctSessionID: "S1", NAS: "sw2"}); r.NAS != "sw2" {
		t.Fatalf("scoped by NAS: %+v", r)
	}
	if rs, _ := s.Find(Query{AcctSessionID: "S1"}); len(rs) != 2 {
		t.Fatalf("S1 at any NAS: %d", len(rs))
	}
	// A Start after a Stop with the same Acct-Session-Id begins a new session; a late Interim
	// after the Stop updates the ended one.
	apply(t, s, acct(KindStop, "sw1", mac, "S2", t0.Add(2*time.Hour)), acct(KindInterim, "sw1", mac, "S2", t0.Add(2*time.Hour)))
	if r := one(t, s, Query{AcctSessionID: "S2"}); r.State != StateStopped {
		t.Fatalf("late interim revived: %+v", r)
	}
	apply(t, s, acct(KindStart, "sw1", mac, "S2", t0.Add(3*time.Hour)))
	if rs, _ := s.Find(Query{AcctSessionID: "S2"}); len(rs) != 2 || rs[1].State != StateActive {
		t.Fatalf("restart of S2: %+v", rs)
	}
	// Accounting-On from sw1 ends every live session there, and none elsewhere.
	apply(t, s, Update{Kind: KindNASReboot, At: t0.Add(4 * time.Hour), Rec: Record{NAS: "sw1"}})
	if rs, _ := s.Find(Query{NAS: "sw1", State: StateActive}); len(rs) != 0 {
		t.Fatalf("live after reboot: %+v", rs)
	}
	if rs, _ := s.Find(Query{NAS: "sw1", State: StateStopped}); len(rs) != 3 || rs[0].TerminateCause != terminateNASReboot {
		t.Fatalf("ended by reboot: %+v", rs)
	}
	one(t, s, Query{NAS: "sw2", State: StateActive})
	// A port session without a MAC (a wired login) joins by NAS port.
	apply(t, s, Update{Kind: KindAccept, At: t0, Rec: Record{NAS: "sw3", NASPortID: "Gi1/0/9", UserName: "admin", Decider: DecidedCloud}},
		Update{Kind: KindStart, At: t0, Rec: Record{NAS: "sw3", NASPortID: "Gi1/0/9", AcctSessionID: "P1"}})
	if r := one(t, s, Query{NAS: "sw3"}); r.UserName != "admin" || r.AcctSessionID != "P1" {
		t.Fatalf("port join: %+v", r)
	}
	// Bad updates are refused with a reason, the rest of the batch is stored.
	err := s.Apply([]Update{{Kind: KindStart, Rec: Record{}}, acct(KindStart, "sw4", mac, "Q", t0),
		{Kind: KindStart, Rec: Record{NAS: "sw4", UserName: string(make([]byte, 300))}}})
	if !errors.Is(err, ErrBadRecord) {
		t.Fatalf("bad updates: %v", err)
	}
	one(t, s, Query{NAS: "sw4"})
	if _, err := s.Find(Query{MAC: "02-00-00-00-00-01"}); !errors.Is(err, ErrBadQuery) {
		t.Fatalf("non-canonical MAC query: %v", err)
	}
	checkIndexes(t, s)
}

// TestIndexConsistencyRandom applies random updates, sweeps and evictions and checks after each
// batch that every index entry names a record that has it, and every record has all its entries.
func TestIndexConsistencyRandom(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.MaxEntries = 40 })
	rng := rand.New(rand.NewPCG(1, 2))
	for batch := range 60 {
		var us []Update
		for range 20 {
			mac := fmt.Sprintf("02:00:00:00:04:%02x", rng.IntN(30))
			nas := fmt.Sprintf("sw%d", rng.IntN(3))
			asid := fmt.Sprintf("%d", rng.IntN(50))
			var u Update
			switch rng.IntN(6) {
			case 0:
				u = accept(nas, mac, fmt.Sprintf("user%d", rng.IntN(10)), Decider(rng.IntN(5)), c.now())
			case 1:
				u = acct(KindStart, nas, mac, asid, c.now())
			case 2:
				u = acct(KindInterim, nas, mac, asid, c.now())
				u.Rec.FramedIP = netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(20))})
			case 3:
				u = acct(KindStop, nas, mac, asid, c.now())
			case 4:
				u = Update{Kind: KindStart, At: c.now(), Rec: Record{NAS: nas, NASPortID: fmt.Sprint(rng.IntN(5)), AcctSessionID: asid}}
			default:
				if rng.IntN(10) == 0 {
					u = Update{Kind: KindNASReboot, At: c.now(), Rec: Record{NAS: nas}}
				} else {
					u = acct(KindInterim, nas, mac, asid, c.now())
				}
			}
			us = append(us, u)
		}
		apply(t, s, us...)
		c.add(time.Duration(rng.IntN(300)) * time.Second)
		if batch%5 == 0 {
			if _, err := s.Sweep(); err != nil {
				t.Fatal(err)
			}
		}
		if rs, _ := s.NeedingReconcile(0); len(rs) > 0 && rng.IntN(2) == 0 {
			if err := s.MarkReconciled(rs[0].ID, rng.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
		}
		checkIndexes(t, s)
	}
	// What recount rebuilds from the file is what the writer kept.
	macs := s.macs.len()
	path := s.opts.Path
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, c, func(o *Options) { o.MaxEntries = 40 })
	checkIndexes(t, s)
	if n := s.macs.len(); n != macs {
		t.Fatalf("after reopening: %d MACs indexed, before %d", n, macs)
	}
}

// checkIndexes verifies the indexes against the records and the in-memory counts against both.
func checkIndexes(t testing.TB, s *Store) {
	t.Helper()
	live, recon := 0, 0
	wantMACs := map[[6]byte][]uint64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		want := map[string]bool{}
		n := 0
		err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			n++
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			if r.State.Live() {
				live++
			}
			if r.Reconcile == ReconcileNeeded {
				recon++
			}
			if m, ok := parseMAC(r.MAC); ok {
				wantMACs[m] = append(wantMACs[m], r.ID) // ForEach goes in ID order
			}
			for _, ik := range indexKeys(&r) {
				want[string(ik.bucket)+"/"+string(ik.key)] = true
				if tx.Bucket(ik.bucket).Get(ik.key) == nil {
					return fmt.Errorf("record %d misses its %s entry", r.ID, ik.bucket)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n != int(s.entries.Load()) {
			return fmt.Errorf("%d records, entries count %d", n, s.entries.Load())
		}
		for _, b := range indexBuckets {
			err := tx.Bucket(b).ForEach(func(k, _ []byte) error {
				if !want[string(b)+"/"+string(k)] {
					return fmt.Errorf("stale %s entry %x", b, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.macs.len() != len(wantMACs) {
		t.Fatalf("MAC index: %d MACs, records have %d", s.macs.len(), len(wantMACs))
	}
	for m, ids := range wantMACs {
		if got := s.macs.all(m); !slices.Equal(got, ids) {
			t.Fatalf("MAC index of %x: %v, records say %v", m, got, ids)
		}
	}
	st := s.Stats()
	sum := 0
	for _, a := range st.Active {
		sum += a.Live
	}
	if st.Live != live || sum != live || st.NeedReconcile != recon {
		t.Fatalf("counts: live %d (per NAS %d) recon %d, records say live %d recon %d", st.Live, sum, st.NeedReconcile, live, recon)
	}
}

// TestConcurrentUse: one writer, readers and the sweeper at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.MaxEntries = 500 })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		defer close(stop)
		for i := range 200 {
			us := make([]Update, 0, 10)
			for j := range 10 {
				n := i*10 + j
				us = append(us, acct(Kind(KindStart+Kind(n%3)), "sw1", fmt.Sprintf("02:00:00:%02x:%02x:%02x", n>>16&0xff, n>>8&0xff, n&0xff), fmt.Sprint(n%700), c.now()))
			}
			if err := s.Apply(us); err != nil {
				t.Error(err)
				return
			}
			c.add(time.Second)
		}
	})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Find(Query{NAS: "sw1", Limit: 50}); err != nil {
					t.Error(err)
					return
				}
				_ = s.Stats()
				if _, err := s.Sweep(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkIndexes(t, s)
	if st := s.Stats(); st.Entries > 500 || st.Applied != 2000 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"cap", Options{MaxEntries: -1}, false},
		{"grace", Options{StopGrace: 25 * time.Hour}, false},
		{"grace small", Options{StopGrace: time.Millisecond}, false},
		{"missed", Options{MissedInterims: 101}, false},
		{"interim", Options{DefaultInterim: time.Second}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrBadOptions)) {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// orderObserver checks that changes arrive in commit order from every writer.
type orderObserver struct {
	s      *Store
	mu     sync.Mutex
	last   map[uint64]time.Time
	misses int
}

func (o *orderObserver) SessionChanged(c Change, prev, cur *Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur == nil {
		delete(o.last, prev.ID)
		return
	}
	if t, ok := o.last[cur.ID]; ok && cur.Updated.Before(t) {
		o.misses++
	}
	o.last[cur.ID] = cur.Updated
	if _, err := o.s.Find(Query{ID: cur.ID}); err != nil { // reading from the observer is allowed
		o.misses++
	}
}

// TestObserverOrder: with the writer, the sweeper and reconciliation running at once, each
// session's changes reach the observer in the order they were committed.
func TestObserverOrder(t *testing.T) {
	c := &clock{t: t0}
	obs := &orderObserver{last: map[uint64]time.Time{}}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.Observer = obs; o.MaxEntries = 50 })
	obs.s = s
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 300 {
			at := t0.Add(time.Duration(i) * time.Second)
			apply(t, s, accept("sw1", fmt.Sprintf("02:00:00:00:05:%02x", i%60), "", DecidedCache, at),
				acct(KindInterim, "sw1", fmt.Sprintf("02:00:00:00:05:%02x", i%60), fmt.Sprint(i%60), at))
		}
	})
	wg.Go(func() {
		for range 100 {
			if rs, _ := s.NeedingReconcile(1); len(rs) == 1 {
				_ = s.MarkReconciled(rs[0].ID, true)
			}
			if _, err := s.Sweep(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if obs.misses != 0 {
		t.Fatalf("%d changes out of order or unreadable from the observer", obs.misses)
	}
	checkIndexes(t, s)
}

// TestWriteSnapshot: the copy opens as a table with the same sessions.
func TestWriteSnapshot(t *testing.T) {
	c := &clock{t: t0}
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "s.db"), c, nil)
	apply(t, s, accept("sw1", "02:00:00:00:06:01", "u", DecidedCloud, t0), acct(KindStart, "sw1", "02:00:00:00:06:01", "A", t0))
	f, err := os.Create(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	n, err := s.WriteSnapshot(func(sz int64) (io.Writer, error) { size = sz; return f, nil })
	f.Close()
	if err != nil || n != size {
		t.Fatalf("snapshot: %d of %d, %v", n, size, err)
	}
	cp := openTest(t, filepath.Join(dir, "copy.db"), c, func(o *Options) { o.ReadOnly = true })
	if r := one(t, cp, Query{AcctSessionID: "A"}); r.MAC != "02:00:00:00:06:01" || cp.Stats().Live != 1 {
		t.Fatalf("copy: %+v", r)
	}
}

// TestReauthUnchanged: an Access-Accept that changes nothing but the times of a live session with
// no address, within a minute of its last write, is not written; anything else is.
func TestReauthUnchanged(t *testing.T) {
	c := &clock{t: t0}
	rec := &recorder{}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.Observer = rec })
	const mac = "02:00:00:00:00:31"
	apply(t, s, accept("sw1", mac, "", DecidedCloud, t0))
	first := one(t, s, Query{MAC: mac})
	rec.take()
	reauths := func(want uint64) {
		t.Helper()
		if got := s.Stats().Reauths; got != want {
			t.Fatalf("Reauths = %d, want %d", got, want)
		}
	}

	c.add(59 * time.Second)
	commits := s.Stats().Commits
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
	reauths(1)
	if got := s.Stats().Commits; got != commits {
		t.Fatalf("a batch that wrote nothing committed (%d → %d commits)", commits, got)
	}
	if r := one(t, s, Query{MAC: mac}); !r.Authorized.Equal(first.Authorized) || !r.Expires.Equal(first.Expires) {
		t.Fatalf("unchanged re-authentication rewrote the session: %+v", r)
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("observer told of an unwritten re-authentication: %q", got)
	}

	c.add(time.Second) // a minute after the last write: written, the times move
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
	reauths(1)
	if r := one(t, s, Query{MAC: mac}); !r.Authorized.Equal(c.now()) || !r.Expires.Equal(c.now().Add(30*time.Minute)) {
		t.Fatalf("re-authentication a minute later not written: %+v", r)
	}

	c.add(time.Second) // a new VLAN is news
	vlan := accept("sw1", mac, "", DecidedCloud, c.now())
	vlan.Rec.VLAN = "42"
	apply(t, s, vlan)
	reauths(1)
	if r := one(t, s, Query{MAC: mac}); r.VLAN != "42" || !r.Authorized.Equal(c.now()) {
		t.Fatalf("changed VLAN not written: %+v", r)
	}

	c.add(time.Second) // so is a local decider
	apply(t, s, accept("sw1", mac, "", DecidedCache, c.now()))
	if r := one(t, s, Query{MAC: mac}); r.Decider != DecidedCache || r.Reconcile != ReconcileNeeded {
		t.Fatalf("local re-authorization not written: %+v", r)
	}

	// A session with an address is always written: identity sinks report its re-authentication.
	c.add(time.Second)
	const ipMAC = "02:00:00:00:00:32"
	apply(t, s, accept("sw1", ipMAC, "", DecidedCloud, c.now()), acct(KindStart, "sw1", ipMAC, "ASID-32", c.now()))
	c.add(time.Second)
	apply(t, s, accept("sw1", ipMAC, "", DecidedCloud, c.now()))
	if r := one(t, s, Query{MAC: ipMAC}); !r.Authorized.Equal(c.now()) {
		t.Fatalf("re-authentication of a session with an address not written: %+v", r)
	}

	// After a Stop the next Accept is a new session, whatever it says.
	c.add(time.Second)
	apply(t, s, acct(KindStop, "sw1", ipMAC, "ASID-32", c.now()))
	c.add(time.Second)
	apply(t, s, accept("sw1", ipMAC, "", DecidedCloud, c.now()))
	if rs, err := s.Find(Query{MAC: ipMAC}); err != nil || len(rs) != 2 {
		t.Fatalf("accept after stop: %d sessions, %v", len(rs), err)
	}
	reauths(1)
	checkIndexes(t, s)
}

// TestReauthWindowWithinHorizon: with the shortest missed-interim horizon (one missed 1-minute
// interval) an unchanged re-authentication is written after half of it, so a client that keeps
// re-authenticating never expires.
func TestReauthWindowWithinHorizon(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, func(o *Options) { o.MissedInterims = 1; o.DefaultInterim = time.Minute })
	const mac = "02:00:00:00:00:33"
	for i := range 20 {
		apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
		if n, err := s.Sweep(); err != nil || n != 0 {
			t.Fatalf("re-authentication %d: swept %d, %v", i, n, err)
		}
		c.add(20 * time.Second)
	}
	// 20 Accepts 20 s apart over 400 s: a write at least every 30 s (every other Accept).
	if st := s.Stats(); st.Reauths == 0 || st.Reauths > 10 || st.Live != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestReauthMarkForgotten: the remembered Accept that lets an identical one skip the table is
// forgotten by anything that writes or removes the session, so what follows is judged afresh.
func TestReauthMarkForgotten(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, nil)
	const mac = "02:00:00:00:00:41"
	step := func() { c.add(time.Second) }
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
	step()
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now())) // absorbed by the mark
	if st := s.Stats(); st.Reauths != 1 {
		t.Fatalf("Reauths = %d, want 1", st.Reauths)
	}
	// Accounting gives the session an address: the next Accept must be written.
	step()
	apply(t, s, acct(KindInterim, "sw1", mac, "ASID-41", c.now()))
	step()
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
	if r := one(t, s, Query{MAC: mac}); !r.Authorized.Equal(c.now()) {
		t.Fatalf("Accept after the session got an address not written: %+v", r)
	}
	// A Stop, then the same Accept: a new session, not the ended one's mark.
	step()
	apply(t, s, acct(KindStop, "sw1", mac, "ASID-41", c.now()))
	step()
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
	step()
	apply(t, s, accept("sw1", mac, "", DecidedCloud, c.now()))
	if rs, err := s.Find(Query{MAC: mac}); err != nil || len(rs) != 2 {
		t.Fatalf("after stop: %d sessions, %v", len(rs), err)
	}
	if st := s.Stats(); st.Reauths != 2 || st.Live != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Swept: the next Accept creates the session again.
	const gone = "02:00:00:00:00:42"
	apply(t, s, accept("sw1", gone, "", DecidedCloud, c.now()))
	c.add(31 * time.Minute)                        // past DefaultInterim 10m × 3
	if n, err := s.Sweep(); err != nil || n != 3 { // gone, the stopped session and its successor
		t.Fatalf("sweep: %d, %v", n, err)
	}
	apply(t, s, accept("sw1", gone, "", DecidedCloud, c.now()))
	if r := one(t, s, Query{MAC: gone}); r.State != StateAuthorized || !r.Authorized.Equal(c.now()) {
		t.Fatalf("accept after expiry: %+v", r)
	}
	// Another NAS's session for the same MAC is its own.
	apply(t, s, accept("sw2", gone, "", DecidedCloud, c.now()))
	if rs, _ := s.Find(Query{MAC: gone}); len(rs) != 2 {
		t.Fatalf("a second NAS: %d sessions, want 2", len(rs))
	}
	checkIndexes(t, s)
}

// BenchmarkApplyReauth is the session table's cost of a client re-authenticating with the same
// answer: after the first Accept, every other one is absorbed.
func BenchmarkApplyReauth(b *testing.B) {
	c := &clock{t: t0}
	s := openTest(b, filepath.Join(b.TempDir(), "s.db"), c, nil)
	const clients = 1000
	batch := make([]Update, 512)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range batch {
			k := i % clients
			batch[j] = accept("sw1", fmt.Sprintf("02:00:00:00:%02x:%02x", byte(k>>8), byte(k)), "", DecidedCloud, c.now())
			i++
		}
		apply(b, s, batch...)
		c.add(time.Millisecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/update")
}

// TestMABUserNameThroughMACIndex: a record whose User-Name names its own MAC (MAB) has no
// User-Name index entry, is still found by that User-Name (any case, not another notation), and a
// file written before that rule loses its old entries when it is opened.
func TestMABUserNameThroughMACIndex(t *testing.T) {
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, c, nil)
	apply(t, s, accept("sw1", "02:00:00:00:00:0a", "02000000000A", DecidedCache, t0),
		accept("sw1", "02:00:00:00:00:0b", "02-00-00-00-00-0b", DecidedCache, t0),
		accept("sw1", "02:00:00:00:00:0c", "alice", DecidedCache, t0),
		accept("sw1", "02:00:00:00:00:0d", "020000000009", DecidedCache, t0)) // another MAC's name
	checkIndexes(t, s)
	userEntries := func() int {
		t.Helper()
		n := 0
		if err := s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketUser).Stats().KeyN; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := userEntries(); n != 2 {
		t.Fatalf("%d User-Name index entries, want 2 (alice, 020000000009)", n)
	}
	for _, tc := range []struct {
		user string
		want string // the MAC found, "" none
	}{
		{"02000000000A", "02:00:00:00:00:0a"},
		{"02000000000a", "02:00:00:00:00:0a"},
		{"02:00:00:00:00:0a", ""}, // another notation is another User-Name
		{"02-00-00-00-00-0B", "02:00:00:00:00:0b"},
		{"ALICE", "02:00:00:00:00:0c"},
		{"020000000009", "02:00:00:00:00:0d"},
		{"02000000000d", ""},
	} {
		rs, err := s.Find(Query{UserName: tc.user})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.want == "" && len(rs) != 0, tc.want != "" && (len(rs) != 1 || rs[0].MAC != tc.want):
			t.Errorf("Find(user %q) = %+v, want %q", tc.user, rs, tc.want)
		}
	}
	// A file from before: its MAB records have User-Name entries (written here by hand).
	err := s.db.Update(func(tx *bolt.Tx) error {
		r := one(t, s, Query{MAC: "02:00:00:00:00:0a"})
		if err := tx.Bucket(bucketUser).Put(new(keyBuilder).str(foldUser(r.UserName)).id(r.ID), nil); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(metaUserIndex)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, c, nil)
	checkIndexes(t, s) // no stale entry
	if n := userEntries(); n != 2 {
		t.Fatalf("after reopening: %d User-Name index entries, want 2", n)
	}
	if r := one(t, s, Query{UserName: "02000000000a"}); r.MAC != "02:00:00:00:00:0a" {
		t.Fatalf("after reopening: %+v", r)
	}
}

func TestUserMAC(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"020000000001", true}, {"02:00:00:00:00:01", true}, {"02-00-00-00-00-01", true}, {"0200.0000.0001", true},
		{"02000000000A", true}, {"02000000001", false}, {"0200000000011", false}, {"02000000000g", false},
		{"", false}, {"02:00:00:00:00:01:", false}, {"bob", false},
	} {
		m, ok := userMAC(tc.in)
		if ok != tc.ok {
			t.Errorf("userMAC(%q) ok = %v, want %v", tc.in, ok, tc.ok)
		}
		if ok && m[0] != 0x02 {
			t.Errorf("userMAC(%q) = %x", tc.in, m)
		}
	}
}
