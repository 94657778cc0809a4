package edge

import (
	"testing"
	"time"

	"mxedge/cache/session"
	"mxedge/edge/cluster"
)

// TestReconcileOwner: the owner rule of docs/cluster.md, as each edge computes it from its member
// list. Exactly one edge owns each session at any moment the edges agree on who is alive and
// reaches the cloud.
func TestReconcileOwner(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	view := func(self string, cloud map[string]bool, alive ...string) []cluster.Member {
		var ms []cluster.Member
		for _, n := range []string{"edge-a", "edge-b", "edge-c"} {
			st := "dead"
			for _, a := range alive {
				if a == n {
					st = "alive"
				}
			}
			if st == "dead" {
				continue // memberlist forgets a dead member (NotifyLeave)
			}
			ms = append(ms, cluster.Member{Name: n, State: st, Self: n == self, ReachesCloud: cloud[n]})
		}
		return ms
	}
	all := map[string]bool{"edge-a": true, "edge-b": true, "edge-c": true}
	byB := &session.Record{Origin: "edge-a", OriginID: 1, AdmittedBy: "edge-b"}
	owners := func(cloud map[string]bool, at time.Time, ros map[string]*reconcileOwners, alive ...string) []string {
		var out []string
		for _, self := range alive {
			if ros[self].owns(self, cloud[self], byB, view(self, cloud, alive...), at) {
				out = append(out, self)
			}
		}
		return out
	}
	fresh := func() map[string]*reconcileOwners {
		m := map[string]*reconcileOwners{}
		for _, n := range []string{"edge-a", "edge-b", "edge-c"} {
			m[n] = &reconcileOwners{unavail: map[string]time.Time{}}
		}
		return m
	}
	for _, tt := range []struct {
		name  string
		cloud map[string]bool
		alive []string
		later time.Duration // the same view held this long
		want  string        // "" none
	}{
		{"the admitter reaches the cloud", all, []string{"edge-a", "edge-b", "edge-c"}, 0, "edge-b"},
		{"the admitter failing back: the others wait", map[string]bool{"edge-a": true, "edge-c": true}, []string{"edge-a", "edge-b", "edge-c"}, 10 * time.Second, ""},
		{"the admitter without the cloud for 30 s: lowest name", map[string]bool{"edge-a": true, "edge-c": true}, []string{"edge-a", "edge-b", "edge-c"}, reconcileTakeover, "edge-a"},
		{"the admitter gone for 30 s, edge-a without the cloud", map[string]bool{"edge-c": true}, []string{"edge-a", "edge-c"}, reconcileTakeover, "edge-c"},
		{"nobody reaches the cloud", map[string]bool{}, []string{"edge-a", "edge-b", "edge-c"}, time.Hour, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ros := fresh()
			owners(tt.cloud, t0, ros, tt.alive...)
			got := owners(tt.cloud, t0.Add(tt.later), ros, tt.alive...)
			want := []string{}
			if tt.want != "" {
				want = []string{tt.want}
			}
			if len(got) != len(want) || len(got) == 1 && got[0] != want[0] {
				t.Fatalf("owners %v, want %v", got, want)
			}
		})
	}
	// The admitter back within the takeover time: its own again, the wait starts over.
	ros := fresh()
	noB := map[string]bool{"edge-a": true, "edge-c": true}
	owners(noB, t0, ros, "edge-a", "edge-b", "edge-c")
	if got := owners(all, t0.Add(20*time.Second), ros, "edge-a", "edge-b", "edge-c"); len(got) != 1 || got[0] != "edge-b" {
		t.Fatalf("the admitter back: owners %v", got)
	}
	if got := owners(noB, t0.Add(40*time.Second), ros, "edge-a", "edge-b", "edge-c"); len(got) != 0 {
		t.Fatalf("10 s after the admitter lost the cloud again: owners %v, want none", got)
	}
	// The admitter seen back only in the member view (no session of its looked at meanwhile):
	// the wait starts over when it is gone again.
	ros = fresh()
	owners(noB, t0, ros, "edge-a", "edge-b", "edge-c")
	ros["edge-a"].refresh(view("edge-a", all, "edge-a", "edge-b", "edge-c"))
	owners(noB, t0.Add(25*time.Second), ros, "edge-a", "edge-b", "edge-c")
	if got := owners(noB, t0.Add(35*time.Second), ros, "edge-a", "edge-b", "edge-c"); len(got) != 0 {
		t.Fatalf("10 s after the admitter was seen without the cloud again: owners %v, want none", got)
	}
	// A session admitted before the admitter was recorded belongs to the edge that created it.
	old := &session.Record{Origin: "edge-c", OriginID: 4}
	if !fresh()["edge-c"].owns("edge-c", true, old, view("edge-c", all, "edge-a", "edge-b", "edge-c"), t0) {
		t.Fatal("edge-c does not own the session it created")
	}
}
