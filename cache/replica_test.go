package cache

import (
	"testing"
	"time"
)

func vlanOf(r Record) string {
	for _, a := range r.Attrs {
		if a.Type == 81 {
			return string(a.Value)
		}
	}
	return ""
}

func mabAt(mac, vlan string, at time.Time) Record {
	return Record{MAC: mac, Identity: "x" + vlan, Method: MethodMAB, Attrs: []Attr{{Type: 81, Value: []byte(vlan)}}, LastAuthorized: at}
}

// The replication rule: the later LastAuthorized wins, in either order of arrival; equal stamps
// pick the same winner whichever arrives first.
func TestMergeLastWriterWins(t *testing.T) {
	clk := newFakeClock()
	now := clk.Now()
	older, newer := mabAt("02:00:00:00:00:01", "10", now.Add(-time.Hour)), mabAt("02:00:00:00:00:01", "20", now.Add(-time.Minute))
	tieA, tieB := mabAt("02:00:00:00:00:02", "30", now.Add(-time.Minute)), mabAt("02:00:00:00:00:02", "40", now.Add(-time.Minute))
	var winners []string
	for _, order := range [][]Record{{older, newer, tieA, tieB}, {newer, older, tieB, tieA}} {
		s := openTestStore(t, clk, nil)
		for _, r := range order {
			if _, err := s.Merge([]Record{r}); err != nil {
				t.Fatal(err)
			}
		}
		r1, _ := mustLookupMAC(t, s, "02:00:00:00:00:01")
		r2, _ := mustLookupMAC(t, s, "02:00:00:00:00:02")
		if vlanOf(r1) != "20" || !r1.LastAuthorized.Equal(newer.LastAuthorized) {
			t.Fatalf("order %v: kept VLAN %s at %v, want the later decision", order, vlanOf(r1), r1.LastAuthorized)
		}
		winners = append(winners, vlanOf(r2))
	}
	if winners[0] != winners[1] {
		t.Fatalf("equal stamps: %s won one way, %s the other", winners[0], winners[1])
	}
}

// MergeQueued applies the same rule through the batched writer and counts the outcomes.
func TestMergeQueued(t *testing.T) {
	clk := newFakeClock()
	now := clk.Now()
	s := openTestStore(t, clk, nil)
	s.MergeQueued(mabAt("02:00:00:00:00:03", "50", now.Add(-time.Minute)))
	s.MergeQueued(mabAt("02:00:00:00:00:03", "60", now.Add(-time.Hour))) // older: loses
	s.MergeQueued(mabAt("02:00:00:00:00:04", "70", now.Add(-30*24*time.Hour)))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	r, ok := mustLookupMAC(t, s, "02:00:00:00:00:03")
	if !ok || vlanOf(r) != "50" {
		t.Fatalf("got %v %s, want VLAN 50", ok, vlanOf(r))
	}
	if _, ok := mustLookupMAC(t, s, "02:00:00:00:00:04"); ok {
		t.Fatal("an expired record was merged")
	}
	st := s.Stats()
	if st.MergeWon != 1 || st.MergeLost != 2 {
		t.Fatalf("won %d lost %d, want 1 and 2", st.MergeWon, st.MergeLost)
	}
}

// ForgetBefore removes only what was authorized before the forget.
func TestForgetBefore(t *testing.T) {
	clk := newFakeClock()
	now := clk.Now()
	s := openTestStore(t, clk, nil)
	if _, err := s.Merge([]Record{mabAt("02:00:00:00:00:05", "10", now.Add(-time.Minute)),
		{MAC: "02:00:00:00:00:06", Identity: "alice", Method: MethodEAPTLS, LastAuthorized: now.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.ForgetBefore(MethodMAB, "02:00:00:00:00:05", "", now.Add(-time.Hour)); err != nil || gone {
		t.Fatalf("a forget older than the accept removed it: %v %v", gone, err)
	}
	if gone, err := s.ForgetBefore(MethodEAPTLS, "02:00:00:00:00:05", "", now); err != nil || gone {
		t.Fatalf("an EAP-TLS forget removed a MAB record: %v %v", gone, err)
	}
	if gone, err := s.ForgetBefore(MethodMAB, "02-00-00-00-00-05", "", now); err != nil || !gone {
		t.Fatalf("a later forget kept it: %v %v", gone, err)
	}
	if gone, err := s.ForgetBefore(MethodEAPTLS, "", "ALICE", now); err != nil || !gone {
		t.Fatalf("the EAP-TLS forget by identity: %v %v", gone, err)
	}
	if st := s.Stats(); st.Entries != 0 {
		t.Fatalf("%d entries left", st.Entries)
	}
}

// What MarshalRecord writes, UnmarshalRecord reads back.
func TestMarshalRecord(t *testing.T) {
	r := mabAt("0200.0000.0007", "80", time.Unix(1_800_000_000, 0))
	b, err := MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalRecord(b)
	if err != nil || got.MAC != "02:00:00:00:00:07" || vlanOf(got) != "80" || !got.LastAuthorized.Equal(r.LastAuthorized) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := UnmarshalRecord(b[:3]); err == nil {
		t.Fatal("a truncated record decoded")
	}
}
