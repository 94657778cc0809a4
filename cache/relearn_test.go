package cache

import (
	"testing"
	"time"
)

// TestRelearnCoalesces: the same decision for the same client within Relearn is not written again;
// anything that differs, a forget in between, or Relearn passing writes it.
func TestRelearnCoalesces(t *testing.T) {
	vlan := func(v string) []Attr { return []Attr{{Type: 81, Tag: 1, Value: []byte(v)}} }
	mab := func(v string) Record {
		return Record{MAC: "02:00:00:00:00:01", Identity: "020000000001", Method: MethodMAB, NAS: "sw1", Attrs: vlan(v)}
	}
	steps := []struct {
		name    string
		advance time.Duration
		before  func(s *Store)
		rec     Record
		written bool
	}{
		{name: "first learn", rec: mab("41"), written: true},
		{name: "same decision at once", rec: mab("41"), written: false},
		{name: "same decision just inside relearn", advance: DefaultRelearn - time.Second, rec: mab("41"), written: false},
		{name: "another VLAN", rec: mab("51"), written: true},
		{name: "another NAS", rec: func() Record { r := mab("51"); r.NAS = "sw2"; return r }(), written: true},
		{name: "after a forget", before: func(s *Store) { s.ForgetMAB("02:00:00:00:00:01") }, rec: func() Record { r := mab("51"); r.NAS = "sw2"; return r }(), written: true},
		{name: "after relearn passed", advance: DefaultRelearn, rec: func() Record { r := mab("51"); r.NAS = "sw2"; return r }(), written: true},
		{name: "another client", rec: Record{MAC: "02:00:00:00:00:02", Identity: "020000000002", Method: MethodMAB, NAS: "sw2", Attrs: vlan("51")}, written: true},
	}
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clk.Advance(st.advance)
			if st.before != nil {
				st.before(s)
				must(t, s.Flush())
			}
			before := s.Stats()
			s.Learn(st.rec)
			must(t, s.Flush())
			after := s.Stats()
			wrote := after.Committed - before.Committed
			skipped := after.Coalesced - before.Coalesced
			if st.written && (wrote != 1 || skipped != 0) || !st.written && (wrote != 0 || skipped != 1) {
				t.Fatalf("written %d, coalesced %d; want written %v", wrote, skipped, st.written)
			}
			r, ok := mustLookupMAC(t, s, st.rec.MAC)
			if !ok || string(r.Attrs[0].Value) != string(st.rec.Attrs[0].Value) || r.NAS != st.rec.NAS {
				t.Fatalf("stored %+v %v, want the learned VLAN and NAS", r, ok)
			}
			if st.written && !r.LastAuthorized.Equal(clk.Now()) {
				t.Fatalf("LastAuthorized %v, want %v", r.LastAuthorized, clk.Now())
			}
		})
	}
}

// TestRelearnOff: a negative Relearn writes every learn; a learn the queue refuses is written on
// the next try.
func TestRelearnOff(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, func(o *Options) { o.Relearn = -1 })
	r := Record{MAC: "02:00:00:00:00:01", Method: MethodMAB, Identity: "x"}
	for range 3 {
		s.Learn(r)
	}
	must(t, s.Flush())
	if st := s.Stats(); st.Committed != 3 || st.Coalesced != 0 {
		t.Fatalf("stats %+v, want 3 written", st)
	}

	q := openTestStore(t, clk, func(o *Options) { o.QueueSize, o.BatchSize = 1, 1 })
	q.Learn(Record{MAC: "02:00:00:00:00:09", Method: MethodMAB, Identity: "y"}) // fills the queue
	q.Learn(r)                                                                  // dropped
	must(t, q.Flush())
	q.Learn(r) // not coalesced with the dropped one
	must(t, q.Flush())
	if st := q.Stats(); st.Drops != 1 || st.Committed != 2 || st.Coalesced != 0 {
		t.Fatalf("stats %+v, want 1 drop, 2 written", st)
	}
}

func TestRelearnBounds(t *testing.T) {
	for _, d := range []time.Duration{-1, 0, time.Second, time.Hour} {
		if err := (Options{Relearn: d}).Validate(); err != nil {
			t.Errorf("Relearn %v: %v", d, err)
		}
	}
	if err := (Options{Relearn: time.Hour + 1}).Validate(); err == nil {
		t.Error("Relearn above 1h accepted")
	}
}
