package cache

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func macN(i int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff) }

func learnN(t testing.TB, s *Store, i int) {
	t.Helper()
	s.Learn(Record{MAC: macN(i), Identity: strings.ReplaceAll(macN(i), ":", ""), Method: MethodMAB})
	must(t, s.Flush())
}

func has(t testing.TB, s *Store, i int) bool {
	t.Helper()
	_, ok := mustLookupMAC(t, s, macN(i))
	return ok
}

// TestCapEvictsOldestConfirmed: at MaxEntries a new client evicts the entry confirmed longest ago,
// once that one is outside Protect; a refreshed entry moves to the back of the order.
func TestCapEvictsOldestConfirmed(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.MaxEntries = 3; o.Protect = time.Hour })
	for i := range 3 {
		learnN(t, s, i)
		clk.Advance(2 * time.Hour)
	}
	learnN(t, s, 0) // 0 is now the most recently confirmed; 1 the oldest
	clk.Advance(2 * time.Hour)
	learnN(t, s, 3)
	if has(t, s, 1) || !has(t, s, 0) || !has(t, s, 2) || !has(t, s, 3) {
		t.Fatalf("after the 4th client: 0 %v 1 %v 2 %v 3 %v, want 1 evicted", has(t, s, 0), has(t, s, 1), has(t, s, 2), has(t, s, 3))
	}
	learnN(t, s, 4)
	if has(t, s, 2) || !has(t, s, 0) {
		t.Fatal("the 5th client did not evict the next oldest (2)")
	}
	st := s.Stats()
	if st.Entries != 3 || st.Evicted != 2 || st.Refused != 0 {
		t.Fatalf("stats %+v, want 3 entries, 2 evicted, 0 refused", st)
	}
}

// TestCapRefusesWhenAllProtected: when every entry was confirmed within Protect, a new client is
// refused (counted, logged) and every existing entry is kept; refreshing a known client still works.
func TestCapRefusesWhenAllProtected(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.MaxEntries = 2; o.Protect = time.Hour })
	learnN(t, s, 0)
	clk.Advance(30 * time.Minute)
	learnN(t, s, 1)
	clk.Advance(time.Minute)
	for i := 2; i < 50; i++ { // a flood of new MACs
		learnN(t, s, i)
	}
	if !has(t, s, 0) || !has(t, s, 1) || has(t, s, 2) {
		t.Fatal("a protected entry was evicted for a new one")
	}
	learnN(t, s, 0) // a refresh is not a new entry
	if st := s.Stats(); st.Refused != 48 || st.Evicted != 0 || st.Entries != 2 {
		t.Fatalf("stats %+v, want 48 refused, 0 evicted, 2 entries", st)
	}
	// Once entry 1 leaves the window it may go: it comes first, 0 having been refreshed after it.
	clk.Advance(time.Hour)
	learnN(t, s, 60)
	if has(t, s, 1) || !has(t, s, 0) || !has(t, s, 60) {
		t.Fatal("entry 1 outside the window was not the one evicted")
	}
	learnN(t, s, 0) // both entries confirmed just now
	rec := sampleRecord()
	rec.MAC, rec.LastAuthorized, rec.Expires, rec.FirstSeen = macN(61), time.Time{}, time.Time{}, time.Time{}
	if err := s.Upsert(rec); !errors.Is(err, ErrFull) {
		t.Fatalf("Upsert into a full, protected store: %v, want ErrFull", err)
	}
}

// TestCapNeverEvictsForOlder: an imported record older than every stored one does not evict a
// stored entry, even one outside Protect: it would give up a newer confirmation for an older one.
func TestCapNeverEvictsForOlder(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.MaxEntries = 1; o.Protect = time.Hour })
	learnN(t, s, 0)
	clk.Advance(3 * time.Hour)
	old := clk.Now().Add(-5 * time.Hour).Format(time.RFC3339)
	rep, err := s.Import(strings.NewReader(`{"mac":"`+macN(1)+`","method":"mab","last_authorized":"`+old+`"}`+"\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Full != 1 || rep.Imported != 0 || !has(t, s, 0) || has(t, s, 1) {
		t.Fatalf("import report %+v; 0 kept %v, 1 stored %v", rep, has(t, s, 0), has(t, s, 1))
	}
	newer := clk.Now().Add(-time.Minute).Format(time.RFC3339)
	rep, err = s.Import(strings.NewReader(`{"mac":"`+macN(2)+`","method":"mab","last_authorized":"`+newer+`"}`+"\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 1 || has(t, s, 0) || !has(t, s, 2) {
		t.Fatalf("a newer import did not replace the unprotected entry: %+v", rep)
	}
}

// TestCapEvictsExpiredFirst: an entry past its TTL is evicted whatever Protect says (it can no
// longer be served), before the sweeper gets to it.
func TestCapEvictsExpiredFirst(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.MaxEntries = 1; o.TTL = MinTTL; o.Protect = MinTTL })
	learnN(t, s, 0)
	clk.Advance(MinTTL + time.Second)
	learnN(t, s, 1)
	if !has(t, s, 1) || s.Stats().Evicted != 1 {
		t.Fatalf("expired entry not evicted: %+v", s.Stats())
	}
}

// TestImportClampsFuture: a record dated in the future is stored as confirmed now, expiring one TTL
// from now, so it expires and ages out like any other.
func TestImportClampsFuture(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	future := clk.Now().Add(10 * 365 * 24 * time.Hour).Format(time.RFC3339)
	line := `{"mac":"` + macN(7) + `","method":"mab","first_seen":"` + future + `","last_authorized":"` + future + `","expires":"` + future + `"}` + "\n"
	rep, err := s.Import(strings.NewReader(line), false)
	if err != nil || rep.Imported != 1 {
		t.Fatalf("import: %+v, %v", rep, err)
	}
	r, ok := mustLookupMAC(t, s, macN(7))
	if !ok {
		t.Fatal("imported record not found")
	}
	now := clk.Now()
	if !r.LastAuthorized.Equal(now) || !r.FirstSeen.Equal(now) || !r.Expires.Equal(now.Add(DefaultTTL)) {
		t.Fatalf("times %v / %v / %v, want now, now, now+TTL", r.FirstSeen, r.LastAuthorized, r.Expires)
	}
	clk.Advance(DefaultTTL + time.Second)
	if _, err := s.PurgeExpired(); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Entries != 0 {
		t.Fatal("the clamped record did not expire")
	}

	// Upsert clamps the same way; an Expires beyond LastAuthorized + TTL is cut to it.
	rec := sampleRecord()
	rec.MAC = macN(8)
	rec.LastAuthorized = clk.Now().Add(-time.Hour)
	rec.FirstSeen = clk.Now().Add(time.Hour)
	rec.Expires = clk.Now().Add(365 * 24 * time.Hour)
	must(t, s.Upsert(rec))
	r, _ = mustLookupMAC(t, s, macN(8))
	if !r.FirstSeen.Equal(rec.LastAuthorized) || !r.Expires.Equal(rec.LastAuthorized.Add(DefaultTTL)) {
		t.Fatalf("upsert times %v / %v / %v", r.FirstSeen, r.LastAuthorized, r.Expires)
	}
}

func TestBoundOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{MaxEntries: -1}, "max entries"},
		{Options{MaxEntries: MaxMaxEntries + 1}, "max entries"},
		{Options{Protect: time.Second}, "protect"},
		{Options{Protect: 8 * 24 * time.Hour}, "protect"},
	} {
		if err := tt.o.Validate(); !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
	if err := (Options{MaxEntries: 1, Protect: 7 * 24 * time.Hour}).Validate(); err != nil {
		t.Error(err)
	}
}
