package session

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestMACIndexModel: random adds and removes against a plain model; last and all agree with it.
func TestMACIndexModel(t *testing.T) {
	x := newMACIndex()
	model := map[[6]byte]map[uint64]bool{}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20_000 {
		m := [6]byte{2, 0, 0, 0, 0, byte(rng.IntN(8))}
		id := uint64(1 + rng.IntN(40))
		if rng.IntN(3) == 0 {
			if got, want := x.remove(m, id), model[m][id]; got != want {
				t.Fatalf("op %d: remove(%x, %d) = %v, want %v", i, m, id, got, want)
			}
			delete(model[m], id)
		} else {
			if got, want := x.add(m, id), !model[m][id]; got != want {
				t.Fatalf("op %d: add(%x, %d) = %v, want %v", i, m, id, got, want)
			}
			if model[m] == nil {
				model[m] = map[uint64]bool{}
			}
			model[m][id] = true
		}
		var want []uint64
		for id := range model[m] {
			want = append(want, id)
		}
		slices.Sort(want)
		if got := x.all(m); !slices.Equal(got, want) {
			t.Fatalf("op %d: all(%x) = %v, want %v", i, m, got, want)
		}
		n := rng.IntN(5)
		wantLast := slices.Clone(want)
		slices.Reverse(wantLast)
		wantLast = wantLast[:min(n, len(wantLast))]
		if got := x.last(nil, m, n); !slices.Equal(got, wantLast) && (len(got) != 0 || len(wantLast) != 0) {
			t.Fatalf("op %d: last(%x, %d) = %v, want %v", i, m, n, got, wantLast)
		}
	}
	macs := 0
	for _, ids := range model {
		if len(ids) > 0 {
			macs++
		}
	}
	if x.len() != macs {
		t.Fatalf("%d MACs indexed, model has %d", x.len(), macs)
	}
}

// TestMACIndexUndoneWithTransaction: a transaction that fails leaves the MAC index as it was,
// for new, moved and removed entries alike.
func TestMACIndexUndoneWithTransaction(t *testing.T) {
	c := &clock{t: t0}
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), c, nil)
	apply(t, s, accept("sw1", "02:00:00:00:00:01", "a", DecidedCache, t0),
		accept("sw1", "02:00:00:00:00:02", "b", DecidedCache, t0))
	a := one(t, s, Query{MAC: "02:00:00:00:00:01"})
	b := one(t, s, Query{MAC: "02:00:00:00:00:02"})
	boom := errors.New("boom")
	err := s.update(func(tx *txn) error {
		if err := tx.apply(&Update{Kind: KindAccept, At: t0, Rec: accept("sw1", "02:00:00:00:00:03", "c", DecidedCache, t0).Rec}); err != nil {
			return err
		}
		moved := a
		moved.MAC = "02:00:00:00:00:04"
		if err := tx.put(&moved, &a); err != nil {
			return err
		}
		if err := tx.remove(b.ID, &b, ChangeExpired); err != nil {
			return err
		}
		if got := s.macs.all([6]byte{2, 0, 0, 0, 0, 3}); len(got) != 1 {
			t.Errorf("inside the transaction the new session is not indexed: %v", got)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	checkIndexes(t, s)
	for mac, want := range map[string]uint64{"02:00:00:00:00:01": a.ID, "02:00:00:00:00:02": b.ID} {
		if r := one(t, s, Query{MAC: mac}); r.ID != want {
			t.Fatalf("%s: %+v, want ID %d", mac, r, want)
		}
	}
	for _, mac := range []string{"02:00:00:00:00:03", "02:00:00:00:00:04"} {
		if rs, _ := s.Find(Query{MAC: mac}); len(rs) != 0 {
			t.Fatalf("%s survived the failed transaction: %+v", mac, rs)
		}
	}
}

// TestSchema1FileMigrated: a file of schema 1 (a MAC index bucket in the file) is read as it is
// when opened read-only, and opened for writing loses that bucket and becomes schema 2, its
// sessions still found by MAC.
func TestSchema1FileMigrated(t *testing.T) {
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, c, nil)
	apply(t, s, accept("sw1", "02:00:00:00:00:01", "a", DecidedCache, t0),
		acct(KindStart, "sw1", "02:00:00:00:00:02", "S2", t0))
	ids := map[string]uint64{}
	for _, r := range all(t, s) {
		ids[r.MAC] = r.ID
	}
	// Make it schema 1 by hand, with the MAC bucket that schema kept.
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketLegacyMAC)
		if err != nil {
			return err
		}
		for mac, id := range ids {
			m, _ := parseMAC(mac)
			if err := b.Put((&keyBuilder{b: m[:]}).id(id), nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, binary.BigEndian.AppendUint64(nil, 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	schema := func(s *Store) (v uint64, legacy bool) {
		t.Helper()
		err := s.db.View(func(tx *bolt.Tx) error {
			v = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(metaSchema))
			legacy = tx.Bucket(bucketLegacyMAC) != nil
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return v, legacy
	}
	ro := openTest(t, path, c, func(o *Options) { o.ReadOnly = true })
	if v, legacy := schema(ro); v != 1 || !legacy {
		t.Fatalf("read-only open changed the file: schema %d, MAC bucket %v", v, legacy)
	}
	if r := one(t, ro, Query{MAC: "02:00:00:00:00:02"}); r.ID != ids["02:00:00:00:00:02"] {
		t.Fatalf("read-only, by MAC: %+v", r)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, c, nil)
	if v, legacy := schema(s); v != schemaVersion || legacy {
		t.Fatalf("after a writable open: schema %d, MAC bucket %v; want %d, none", v, legacy, schemaVersion)
	}
	checkIndexes(t, s)
	for mac, id := range ids {
		if r := one(t, s, Query{MAC: mac}); r.ID != id {
			t.Fatalf("%s after migration: %+v, want ID %d", mac, r, id)
		}
	}
}

// TestNewerSchemaRefused: a file from a newer binary is refused, read-only or not, not trusted.
func TestNewerSchemaRefused(t *testing.T) {
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, c, nil)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchema, binary.BigEndian.AppendUint64(nil, schemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		_, err := Open(Options{Path: path, ReadOnly: ro, OpenTimeout: time.Second})
		if !errors.Is(err, ErrUnknownVersion) {
			t.Fatalf("read-only %v: %v, want ErrUnknownVersion", ro, err)
		}
	}
}

func all(t testing.TB, s *Store) []Record {
	t.Helper()
	rs, err := s.Find(Query{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestMACIndexMemory: a MAC with one session costs one slot of the index, under 40 octets with
// the map's spare room (the table's default 200,000 sessions: under 8 MB).
func TestMACIndexMemory(t *testing.T) {
	const n = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newMACIndex()
	for i := range uint64(n) {
		x.add([6]byte{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}, i+1)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.1f octets per MAC", per)
	if per > 40 {
		t.Fatalf("%.1f octets per MAC, want at most 40", per)
	}
	runtime.KeepAlive(x)
}

// TestReauthMarksMemory: a full set of re-authentication marks (maxReauthMarks) keyed by a hash,
// without pointers, takes at most four fifths of the heap that marks keyed by "NAS\x00MAC" strings
// and holding a time.Time did, measured the same way in the same run; and the collector has
// nothing to scan in them.
func TestReauthMarksMemory(t *testing.T) {
	heap := func(fill func() any) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		v := fill()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(v)
		return float64(after.HeapAlloc-before.HeapAlloc) / maxReauthMarks
	}
	mac := func(i uint64) [6]byte { return [6]byte{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)} }
	now := heap(func() any {
		s := &Store{marks: map[uint64]reauthMark{}}
		tx := &txn{s: s}
		for i := range uint64(maxReauthMarks) {
			tx.setMark(i*0x9e3779b97f4a7c15, reauthMark{sum: i, updated: int64(i), window: time.Minute, mac: mac(i)})
		}
		tx.commitMarks()
		if len(s.marks) != maxReauthMarks {
			t.Fatalf("%d marks, want %d", len(s.marks), maxReauthMarks)
		}
		return s
	})
	type stringMark struct {
		sum     uint64
		updated time.Time
		window  time.Duration
	}
	strs := heap(func() any {
		m := map[string]stringMark{}
		for i := range uint64(maxReauthMarks) {
			k := mac(i)
			m["sw1\x00"+string(k[:])] = stringMark{sum: i, updated: time.Unix(0, int64(i)), window: time.Minute}
		}
		return m
	})
	t.Logf("%.1f octets per mark, %.1f with string keys and time.Time", now, strs)
	if now > 0.8*strs {
		t.Fatalf("%.1f octets per mark, want at most 4/5 of %.1f", now, strs)
	}
}
