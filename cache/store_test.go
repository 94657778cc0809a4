package cache

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fakeClock is an injectable clock so TTL behaviour is tested without
// sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openTestStore opens a store in a temp dir with the fake clock.
func openTestStore(t testing.TB, clk *fakeClock, mod func(*Options)) *Store {
	t.Helper()
	o := Options{Path: filepath.Join(t.TempDir(), "cache.db"), Now: clk.Now, NoSync: true}
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustLookupMAC(t testing.TB, s *Store, mac string) (Record, bool) {
	t.Helper()
	r, ok, err := s.LookupMAC(mac)
	if err != nil {
		t.Fatalf("LookupMAC(%s): %v", mac, err)
	}
	return r, ok
}

func TestUpsertLookup(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	r := sampleRecord()
	r.MAC = "0011.2233.4455"
	r.LastAuthorized, r.Expires, r.FirstSeen = time.Time{}, time.Time{}, time.Time{}
	r.Attrs = append(r.Attrs, Attr{Type: 25, Value: []byte("cookie")}) // Class: kept, the cache judges no attribute
	if err := s.Upsert(r); err != nil {
		t.Fatal(err)
	}
	for _, mac := range []string{"00:11:22:33:44:55", "001122334455", "00-11-22-33-44-55", "0011.2233.4455"} {
		got, ok := mustLookupMAC(t, s, mac)
		if !ok {
			t.Fatalf("LookupMAC(%s) missed", mac)
		}
		if got.MAC != "00:11:22:33:44:55" || !got.LastAuthorized.Equal(clk.Now()) ||
			!got.Expires.Equal(clk.Now().Add(DefaultTTL)) || !got.FirstSeen.Equal(clk.Now()) {
			t.Fatalf("record %+v", got)
		}
		if len(got.Attrs) != len(sampleRecord().Attrs)+1 {
			t.Fatalf("attributes not kept as given: %+v", got.Attrs)
		}
	}
	for _, id := range []string{"001122334455", "001122334455"} {
		if _, ok, err := s.LookupIdentity(id); err != nil || !ok {
			t.Fatalf("LookupIdentity(%s) = %v, %v", id, ok, err)
		}
	}
	if _, ok := mustLookupMAC(t, s, "00:11:22:33:44:56"); ok {
		t.Fatal("unknown MAC hit")
	}
	if _, _, err := s.LookupMAC("bogus"); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("bad MAC: %v", err)
	}
	if st := s.Stats(); st.Entries != 1 || st.ExpiredPending != 0 || st.DBSize == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIdentityIndex(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	// alice has a laptop and a phone; the phone was authorized later.
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:01", Identity: "Alice@Example.com", Method: MethodEAPTLS}))
	clk.Advance(time.Minute)
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:02", Identity: "alice@example.com", Method: MethodEAPTLS, Site: "phone"}))
	// A cert-only client without a MAC is keyed by identity.
	must(t, s.Upsert(Record{Identity: "host1.example.com", Method: MethodEAPTLS, Site: "noMAC"}))

	tests := []struct {
		identity, mac string
		wantSite      string
		wantOK        bool
	}{
		{identity: "alice@example.com", wantSite: "phone", wantOK: true},
		{identity: "ALICE@EXAMPLE.COM", wantSite: "phone", wantOK: true},
		{identity: "alice@example.com", mac: "02:00:00:00:00:01", wantSite: "", wantOK: true}, // MAC first
		{identity: "host1.example.com", wantSite: "noMAC", wantOK: true},
		{identity: "HOST1.example.com", mac: "02:00:00:00:00:09", wantSite: "noMAC", wantOK: true}, // MAC miss, identity hit
		{identity: "host1.example.com", mac: "garbage", wantSite: "noMAC", wantOK: true},
		{identity: "bob", wantOK: false},
		{identity: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.identity+"/"+tt.mac, func(t *testing.T) {
			r, ok, err := s.Lookup(tt.identity, tt.mac)
			if err != nil || ok != tt.wantOK || r.Site != tt.wantSite {
				t.Fatalf("Lookup = %+v, %v, %v", r, ok, err)
			}
		})
	}
	if st := s.Stats(); st.Entries != 3 {
		t.Fatalf("entries %d", st.Entries)
	}
	// Changing the identity of a MAC-keyed record moves its index entry.
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:03", Identity: "erin", Method: MethodOther}))
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:03", Identity: "carol", Method: MethodOther, Site: "carol"}))
	if _, ok, _ := s.LookupIdentity("erin"); ok {
		t.Fatal("erin still indexed after move")
	}
	if r, ok, _ := s.LookupIdentity("carol"); !ok || r.Site != "carol" {
		t.Fatalf("carol: %+v %v", r, ok)
	}
	// EAP-TLS records are one per device and identity: a second identity on
	// alice's phone leaves hers in place.
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:02", Identity: "dan", Method: MethodEAPTLS, Site: "dan"}))
	if r, ok, _ := s.LookupEAPTLS("alice@example.com", "02:00:00:00:00:02"); !ok || r.Site != "phone" {
		t.Fatalf("alice after dan: %+v %v", r, ok)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestExpiry(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.TTL = 24 * time.Hour; o.SweepBatch = 3 })
	for i := range 10 {
		must(t, s.Upsert(Record{MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), Identity: fmt.Sprintf("u%d", i)}))
		clk.Advance(time.Hour)
	}
	// Now = t0+10h. Entry i expires at t0+i h+24h.
	clk.Advance(14*time.Hour + time.Second) // t0+24h+1s: entry 0 expired
	if _, ok := mustLookupMAC(t, s, "02:00:00:00:00:00"); ok {
		t.Fatal("expired entry served by MAC")
	}
	if _, ok, _ := s.LookupIdentity("u0"); ok {
		t.Fatal("expired entry served by identity")
	}
	if _, ok := mustLookupMAC(t, s, "02:00:00:00:00:01"); !ok {
		t.Fatal("live entry missed")
	}
	clk.Advance(4 * time.Hour) // entries 0..4 expired
	var listed int
	must(t, s.List(func(Record) bool { listed++; return true }))
	if listed != 5 {
		t.Fatalf("List returned %d live records, want 5", listed)
	}
	listed = 0
	must(t, s.List(func(Record) bool { listed++; return listed < 2 }))
	if listed != 2 {
		t.Fatalf("List did not stop when asked: %d calls", listed)
	}
	if st := s.Stats(); st.Entries != 10 || st.ExpiredPending != 5 {
		t.Fatalf("before sweep %+v", st)
	}
	// Sweeps in transactions of SweepBatch=3: 3 + 2.
	n, err := s.PurgeExpired()
	if err != nil || n != 5 {
		t.Fatalf("PurgeExpired = %d, %v", n, err)
	}
	st := s.Stats()
	if st.Entries != 5 || st.ExpiredPending != 0 || st.Swept != 5 || st.LastSweepCount != 5 {
		t.Fatalf("after sweep %+v", st)
	}
	if _, ok, _ := s.LookupIdentity("u5"); !ok {
		t.Fatal("u5 lost")
	}
	// The expiry and identity indexes hold only the live entries.
	must(t, s.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketExpiry).Stats().KeyN; n != 5 {
			return fmt.Errorf("expiry index has %d keys", n)
		}
		if n := tx.Bucket(bucketIdent).Stats().KeyN; n != 5 {
			return fmt.Errorf("identity index has %d keys", n)
		}
		return nil
	}))
}

func TestShorterTTLAppliesAtOnce(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(Options{Path: path, Now: clk.Now, TTL: 30 * 24 * time.Hour})
	must(t, err)
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:01"}))
	must(t, s.Close())
	clk.Advance(2 * 24 * time.Hour)
	s, err = Open(Options{Path: path, Now: clk.Now, TTL: 24 * time.Hour})
	must(t, err)
	defer s.Close()
	if _, ok := mustLookupMAC(t, s, "02:00:00:00:00:01"); ok {
		t.Fatal("entry older than the new 1-day TTL served")
	}
}

func TestSweepOnceBounded(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	for i := range 25 {
		must(t, s.Upsert(Record{MAC: fmt.Sprintf("02:00:00:00:01:%02x", i)}))
	}
	clk.Advance(DefaultTTL)
	for _, want := range []int{10, 10, 5, 0} {
		n, err := s.sweepOnce(clk.Now(), 10)
		if err != nil || n != want {
			t.Fatalf("sweepOnce = %d, %v; want %d", n, err, want)
		}
	}
}

func TestLearnRefreshAndForget(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	t0 := clk.Now()
	s.Learn(Record{MAC: "AA-BB-CC-DD-EE-01", Identity: "aabbccddee01", Method: MethodMAB,
		Attrs: []Attr{{Type: 81, Tag: 1, Value: []byte("41")}, {Type: attrState, Value: []byte("s")}}})
	must(t, s.Flush())
	r, ok := mustLookupMAC(t, s, "aa:bb:cc:dd:ee:01")
	if !ok || !r.FirstSeen.Equal(t0) || !r.Expires.Equal(t0.Add(DefaultTTL)) || len(r.Attrs) != 2 {
		t.Fatalf("learned %+v %v", r, ok)
	}
	clk.Advance(3 * 24 * time.Hour)
	s.Learn(Record{MAC: "aabbccddee01", Identity: "aabbccddee01", Method: MethodMAB,
		Attrs: []Attr{{Type: 81, Tag: 1, Value: []byte("51")}}})
	must(t, s.Flush())
	r, _ = mustLookupMAC(t, s, "aa:bb:cc:dd:ee:01")
	if !r.FirstSeen.Equal(t0) || !r.LastAuthorized.Equal(clk.Now()) || !r.Expires.Equal(clk.Now().Add(DefaultTTL)) ||
		string(r.Attrs[0].Value) != "51" {
		t.Fatalf("refreshed %+v", r)
	}
	// The old expiry index entry went away: one entry, none pending.
	clk.Advance(5 * 24 * time.Hour) // past the first expiry, before the refreshed one
	if n, err := s.PurgeExpired(); err != nil || n != 0 {
		t.Fatalf("purge after refresh = %d, %v", n, err)
	}
	if _, ok := mustLookupMAC(t, s, "aa:bb:cc:dd:ee:01"); !ok {
		t.Fatal("refreshed entry lost")
	}

	// A reject naming an identity removes its EAP-TLS records; a MAB reject
	// the MAB record of the MAC.
	s.Learn(Record{MAC: "02:00:00:00:00:07", Identity: "dave", Method: MethodEAPTLS})
	s.Learn(Record{MAC: "02:00:00:00:00:08", Identity: "dave", Method: MethodEAPTLS})
	s.Learn(Record{Identity: "Dave", Method: MethodEAPTLS})
	must(t, s.Flush())
	if st := s.Stats(); st.Entries != 4 {
		t.Fatalf("entries %d", st.Entries)
	}
	s.ForgetIdentity("DAVE")
	s.ForgetMAB("aa:bb:cc:dd:ee:01")
	must(t, s.Flush())
	for _, mac := range []string{"02:00:00:00:00:07", "02:00:00:00:00:08", "aa:bb:cc:dd:ee:01"} {
		if _, ok := mustLookupMAC(t, s, mac); ok {
			t.Fatalf("%s survived Forget", mac)
		}
	}
	if _, ok, _ := s.LookupIdentity("dave"); ok {
		t.Fatal("dave survived Forget")
	}
	if st := s.Stats(); st.Entries != 0 || st.Committed != 7 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMABIdentityNotIndexed(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	must(t, s.Upsert(Record{MAC: "aa:bb:cc:dd:ee:01", Identity: "AABBCCDDEE01", Method: MethodMAB, Site: "mab"}))
	must(t, s.Upsert(Record{MAC: "aa:bb:cc:dd:ee:02", Method: MethodMAB}))
	must(t, s.Upsert(Record{MAC: "aa:bb:cc:dd:ee:03", Identity: "grace", Method: MethodEAPTLS}))
	must(t, s.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketIdent).Stats().KeyN; n != 1 {
			return fmt.Errorf("identity index has %d keys, want 1 (grace)", n)
		}
		return nil
	}))
	tests := []struct {
		identity string
		want     bool
	}{
		{"aabbccddee01", true},
		{"aa-bb-cc-dd-ee-01", true},
		{"aabb.ccdd.ee01", true},
		{"aabbccddee02", false}, // no identity stored
		{"aabbccddee03", false}, // the MAC of grace's device is not her identity
		{"grace", true},
	}
	for _, tt := range tests {
		if _, ok, err := s.LookupIdentity(tt.identity); err != nil || ok != tt.want {
			t.Errorf("LookupIdentity(%q) = %v, %v; want %v", tt.identity, ok, err, tt.want)
		}
	}
	// ForgetMAB takes the MAC in any notation.
	s.ForgetMAB("AA-BB-CC-DD-EE-01")
	must(t, s.Flush())
	if _, ok := mustLookupMAC(t, s, "aa:bb:cc:dd:ee:01"); ok {
		t.Fatal("MAB client survived Forget by User-Name")
	}
}

func TestDelete(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:01", Identity: "erin"}))
	must(t, s.Upsert(Record{Identity: "frank"}))
	tests := []struct {
		key  string
		want bool
	}{
		{"0200.0000.0001", true},
		{"02:00:00:00:00:01", false},
		{"FRANK", true},
		{"frank", false},
		{"nobody", false},
	}
	for _, tt := range tests {
		got, err := s.Delete(tt.key)
		if err != nil || got != tt.want {
			t.Fatalf("Delete(%q) = %v, %v; want %v", tt.key, got, err, tt.want)
		}
	}
	if st := s.Stats(); st.Entries != 0 {
		t.Fatalf("entries %d", st.Entries)
	}
}

func TestUpsertRejects(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	tests := []struct {
		name string
		r    Record
		want error
	}{
		{"no key", Record{}, ErrBadRecord},
		{"bad mac", Record{MAC: "xyz"}, ErrBadMAC},
		{"expired", Record{MAC: "02:00:00:00:00:01", Expires: clk.Now().Add(-time.Second)}, ErrExpired},
		{"expired by ttl", Record{MAC: "02:00:00:00:00:01", LastAuthorized: clk.Now().Add(-DefaultTTL)}, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Upsert(tt.r); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"defaults", Options{}, ""},
		{"1 day", Options{TTL: 24 * time.Hour}, ""},
		{"30 days", Options{TTL: 30 * 24 * time.Hour}, ""},
		{"ttl too short", Options{TTL: 23 * time.Hour}, "ttl must be between 1 and 30 days"},
		{"ttl too long", Options{TTL: 31 * 24 * time.Hour}, "ttl must be between 1 and 30 days"},
		{"negative ttl", Options{TTL: -time.Hour}, "ttl"},
		{"batch size", Options{BatchSize: -1}, "batch size"},
		{"batch over queue", Options{BatchSize: 10, QueueSize: 5}, "batch size"},
		{"batch delay", Options{BatchDelay: time.Minute}, "batch delay"},
		{"sweep interval", Options{SweepInterval: time.Millisecond}, "sweep interval"},
		{"sweep batch", Options{SweepBatch: -5}, "sweep batch"},
		{"open timeout", Options{OpenTimeout: time.Hour}, "open timeout"},
		{"queue", Options{QueueSize: -1}, "queue size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestLockedAndReadOnly(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "sub", "cache.db")
	s := openTestStore(t, clk, func(o *Options) { o.Path = path })
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:01"}))

	// The writer holds the exclusive lock: a second open, read-only or
	// not, fails fast with ErrLocked instead of hanging.
	for _, ro := range []bool{false, true} {
		start := time.Now()
		_, err := Open(Options{Path: path, ReadOnly: ro, OpenTimeout: 50 * time.Millisecond})
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("readOnly=%v: %v, want ErrLocked", ro, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("locked open took %v", d)
		}
	}
	must(t, s.Close())

	ro, err := Open(Options{Path: path, ReadOnly: true, Now: clk.Now})
	must(t, err)
	defer ro.Close()
	if _, ok := mustLookupMAC(t, ro, "02:00:00:00:00:01"); !ok {
		t.Fatal("read-only store misses")
	}
	if err := ro.Upsert(Record{MAC: "02:00:00:00:00:02"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only upsert: %v", err)
	}
	if _, err := ro.PurgeExpired(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only purge: %v", err)
	}
	ro.Learn(Record{MAC: "02:00:00:00:00:03"})
	if ro.Stats().Drops != 1 {
		t.Fatal("read-only learn not counted as a drop")
	}
	// Two readers share the lock.
	ro2, err := Open(Options{Path: path, ReadOnly: true, OpenTimeout: 50 * time.Millisecond})
	must(t, err)
	must(t, ro2.Close())

	if _, err := Open(Options{Path: filepath.Join(t.TempDir(), "missing.db"), ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}

func TestRunBatchesAndStops(t *testing.T) {
	base := runtime.NumGoroutine()
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.BatchSize = 10; o.BatchDelay = 10 * time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// Full batches commit without waiting for BatchDelay (ten seconds);
	// the last 5 wait and are committed by Run on cancel.
	waitCommitted := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.Stats().Committed < n {
			if time.Now().After(deadline) {
				t.Fatalf("full batch not committed: %+v", s.Stats())
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 25 {
		s.Learn(Record{MAC: fmt.Sprintf("02:00:00:00:02:%02x", i), Method: MethodMAB})
		if i == 9 || i == 19 {
			waitCommitted(uint64(i + 1))
		}
	}
	if st := s.Stats(); st.QueueDepth != 5 || st.Committed != 20 || st.Commits != 2 {
		t.Fatalf("stats %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := s.Stats(); st.Entries != 25 || st.QueueDepth != 0 {
		t.Fatalf("after Run: %+v", st)
	}
	waitGoroutines(t, base)
}

func waitGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d > baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQueueFullDrops(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.QueueSize = 8; o.BatchSize = 8 })
	// No Run: nothing drains the queue, so the 9th and later are dropped
	// without blocking.
	for i := range 20 {
		s.Learn(Record{MAC: fmt.Sprintf("02:00:00:00:03:%02x", i)})
	}
	s.ForgetMAB("02:00:00:00:03:00")
	if st := s.Stats(); st.QueueDepth != 8 || st.Drops != 13 {
		t.Fatalf("stats %+v", st)
	}
	must(t, s.Flush())
	if st := s.Stats(); st.Entries != 8 || st.QueueDepth != 0 {
		t.Fatalf("after flush %+v", st)
	}
	// Invalid learns are rejected, not queued.
	s.Learn(Record{})
	if s.Stats().QueueDepth != 0 {
		t.Fatal("invalid record queued")
	}
	must(t, s.Close())
	s.Learn(Record{MAC: "02:00:00:00:03:ff"})
	if s.Stats().Drops != 14 {
		t.Fatal("learn after close not dropped")
	}
}

func TestPersistAcrossReopen(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(Options{Path: path, Now: clk.Now})
	must(t, err)
	want := sampleRecord()
	want.LastAuthorized = clk.Now()
	want.Expires = clk.Now().Add(DefaultTTL)
	s.Learn(want)
	must(t, s.Close()) // Close flushes the queue
	s, err = Open(Options{Path: path, Now: clk.Now})
	must(t, err)
	defer s.Close()
	got, ok := mustLookupMAC(t, s, want.MAC)
	if !ok {
		t.Fatal("lost across reopen")
	}
	want.FirstSeen = got.FirstSeen // Learn keeps the given FirstSeen
	assertRecordEqual(t, got, want)
}

// TestConcurrentUse runs learners, forgetters, readers, the writer and the
// sweeper at once under -race, then checks that every learn accepted before
// Close is durable.
func TestConcurrentUse(t *testing.T) {
	base := runtime.NumGoroutine()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(Options{Path: path, Now: clk.Now, NoSync: true, BatchSize: 32, BatchDelay: time.Millisecond, SweepInterval: time.Second})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var wg sync.WaitGroup
	const writers, perWriter = 4, 500
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				s.Learn(Record{MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", w, i>>8, i&0xff), Identity: fmt.Sprintf("w%d", w), Method: MethodEAPTLS})
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			s.ForgetMAB(fmt.Sprintf("02:00:00:09:00:%02x", i&0xff))
			s.ForgetIdentity("nobody")
		}
	})
	for range 2 {
		wg.Go(func() {
			for i := range 500 {
				if _, _, err := s.Lookup(fmt.Sprintf("w%d", i%writers), fmt.Sprintf("02:00:00:00:00:%02x", i&0xff)); err != nil {
					t.Error(err)
					return
				}
				_ = s.Stats()
			}
		})
	}
	wg.Wait()
	cancel()
	must(t, <-done)
	must(t, s.Close())
	must(t, s.Close()) // idempotent
	if st := s.Stats(); st.Drops != 0 {
		t.Fatalf("drops %d", st.Drops)
	}
	s, err = Open(Options{Path: path, Now: clk.Now})
	must(t, err)
	defer s.Close()
	if st := s.Stats(); st.Entries != writers*perWriter {
		t.Fatalf("entries %d, want %d", st.Entries, writers*perWriter)
	}
	waitGoroutines(t, base)
}

// TestMethodsDistinct: a MAB record and an EAP-TLS record of one MAC are
// two records; each lookup and each forget sees only its own method.
func TestMethodsDistinct(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	const mac = "02:00:00:00:00:99"
	must(t, s.Upsert(Record{MAC: mac, Identity: "laptop.lab.test", Method: MethodEAPTLS, Site: "tls"}))
	clk.Advance(time.Minute)
	// A later MAB accept of the same MAC neither overwrites nor shadows it.
	must(t, s.Upsert(Record{MAC: mac, Identity: "020000000099", Method: MethodMAB, Site: "mab"}))
	if st := s.Stats(); st.Entries != 2 {
		t.Fatalf("entries %d, want 2", st.Entries)
	}
	lookups := []struct {
		name     string
		lookup   func() (Record, bool, error)
		wantSite string
	}{
		{"mab", func() (Record, bool, error) { return s.LookupMAB("02-00-00-00-00-99") }, "mab"},
		{"eap-tls", func() (Record, bool, error) { return s.LookupEAPTLS("LAPTOP.lab.test", mac) }, "tls"},
		{"eap-tls-other-mac", func() (Record, bool, error) { return s.LookupEAPTLS("laptop.lab.test", "02:00:00:00:00:01") }, "tls"},
		{"eap-tls-other-identity", func() (Record, bool, error) { return s.LookupEAPTLS("intruder.lab.test", mac) }, ""},
		{"eap-tls-mac-identity", func() (Record, bool, error) { return s.LookupEAPTLS("020000000099", mac) }, ""},
		{"eap-tls-no-identity", func() (Record, bool, error) { return s.LookupEAPTLS("", mac) }, ""},
		{"mab-unknown", func() (Record, bool, error) { return s.LookupMAB("02:00:00:00:00:98") }, ""},
	}
	for _, tt := range lookups {
		t.Run(tt.name, func(t *testing.T) {
			r, ok, err := tt.lookup()
			if err != nil || ok != (tt.wantSite != "") || r.Site != tt.wantSite {
				t.Fatalf("got %+v, %v, %v; want site %q", r, ok, err, tt.wantSite)
			}
		})
	}
	// An EAP-TLS record alone is no MAB record.
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:77", Identity: "alice", Method: MethodEAPTLS}))
	if _, ok, _ := s.LookupMAB("02:00:00:00:00:77"); ok {
		t.Fatal("EAP-TLS record served as MAB")
	}
	// Forgetting the MAB record leaves the EAP-TLS one, and the reverse.
	s.ForgetMAB(mac)
	must(t, s.Flush())
	if _, ok, _ := s.LookupMAB(mac); ok {
		t.Fatal("MAB record survived ForgetMAB")
	}
	if _, ok, _ := s.LookupEAPTLS("laptop.lab.test", mac); !ok {
		t.Fatal("ForgetMAB removed the EAP-TLS record")
	}
	must(t, s.Upsert(Record{MAC: mac, Identity: "020000000099", Method: MethodMAB}))
	s.ForgetIdentity("Laptop.Lab.Test")
	s.ForgetMAB("02:00:00:00:00:77") // not a MAB record: kept
	must(t, s.Flush())
	if _, ok, _ := s.LookupEAPTLS("laptop.lab.test", mac); ok {
		t.Fatal("EAP-TLS record survived ForgetIdentity")
	}
	if _, ok, _ := s.LookupMAB(mac); !ok {
		t.Fatal("ForgetIdentity removed the MAB record")
	}
	if _, ok, _ := s.LookupEAPTLS("alice", ""); !ok {
		t.Fatal("ForgetMAB removed an EAP-TLS record")
	}
	// The operator's delete by MAC removes both methods.
	must(t, s.Upsert(Record{MAC: mac, Identity: "laptop.lab.test", Method: MethodEAPTLS}))
	if r, ok, _ := s.LookupMAC(mac); !ok || r.Method != MethodMAB {
		t.Fatalf("LookupMAC = %+v %v, want the MAB record first", r, ok)
	}
	if removed, err := s.Delete(mac); err != nil || !removed {
		t.Fatalf("Delete = %v, %v", removed, err)
	}
	if _, ok, _ := s.LookupMAC(mac); ok {
		t.Fatal("record survived Delete")
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Fatalf("entries %d, want 1 (alice)", st.Entries)
	}
}

// TestLookupMABOutcomes: what the local MAB decision can get from LookupMAB, record by record: the
// whole live MAB record, field for field as stored; nothing for an absent MAC, an expired record
// (by its Expires or by the TTL), a record of another method under the MAC's key or an EAP-TLS
// record of the MAC; ErrBadMAC for a malformed MAC and ErrBadRecord, naming the client, for a
// record that does not decode.
func TestLookupMABOutcomes(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.TTL = 48 * time.Hour })
	live := sampleRecord()
	live.LastAuthorized, live.FirstSeen, live.Expires = clk.Now().Add(-30*time.Hour), clk.Now().Add(-48*time.Hour), clk.Now().Add(17*time.Hour)
	must(t, s.Upsert(live))
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:01", Identity: "020000000001", Method: MethodMAB,
		LastAuthorized: clk.Now().Add(-2 * time.Hour), Expires: clk.Now().Add(time.Minute)}))
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:02", Method: MethodOther, LastAuthorized: clk.Now()}))
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:03", Identity: "laptop.lab.test", Method: MethodEAPTLS}))
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:04", Identity: "020000000004", Method: MethodMAB,
		LastAuthorized: clk.Now().Add(-23 * time.Hour)}))
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		m, _ := ParseMAC("02:00:00:00:00:05")
		return tx.Bucket(bucketRecords).Put(macKey(m), []byte{codecV1, byte(MethodMAB), flagHasMAC, 1, 2})
	}))
	clk.Advance(2 * time.Minute) // 02:..:01 past its Expires
	r, ok, err := s.LookupMAB("00-11-22-33-44-55")
	if err != nil || !ok {
		t.Fatalf("live record: %v %v", ok, err)
	}
	assertRecordEqual(t, r, live)
	for _, tc := range []struct {
		name, mac string
		found     bool
		err       error
	}{
		{"absent", "02:00:00:00:00:99", false, nil},
		{"expired", "02:00:00:00:00:01", false, nil},
		{"other method", "02:00:00:00:00:02", false, nil},
		{"eap-tls only", "02-00-00-00-00-03", false, nil},
		{"live, any notation", "020000000004", true, nil},
		{"undecodable", "02:00:00:00:00:05", false, ErrBadRecord},
		{"malformed mac", "02:00:00:00:00", false, ErrBadMAC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok, err := s.LookupMAB(tc.mac)
			if ok != tc.found || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("got %+v %v %v, want found %v, error %v", r, ok, err, tc.found, tc.err)
			}
			if tc.err == ErrBadRecord && !strings.Contains(err.Error(), "02:00:00:00:00:05") {
				t.Fatalf("error does not name the client: %v", err)
			}
		})
	}
	// A shorter TTL expires the live record at once, before its stored Expires (Store.live).
	must(t, s.Close())
	short, err := Open(Options{Path: s.opts.Path, Now: clk.Now, NoSync: true, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if _, ok, err := short.LookupMAB("00:11:22:33:44:55"); ok || err != nil {
		t.Fatalf("past the TTL: %v %v", ok, err)
	}
}
