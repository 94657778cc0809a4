package resolve

import (
	"math"
	"net/netip"
	"slices"
	"testing"
)

func tg(addr string, prio, weight uint16, host string) Target {
	return Target{Addr: netip.MustParseAddrPort(addr), Priority: prio, Weight: weight, Host: host}
}

func TestOrderRotatesPlainAddresses(t *testing.T) {
	in := []Target{tg("[2001:db8::1]:2083", 0, 0, "h"), tg("192.0.2.1:2083", 0, 0, "h"), tg("192.0.2.2:2083", 0, 0, "h")}
	orig := slices.Clone(in)
	for n := range uint64(6) {
		got := Order(in, n)
		want := slices.Concat(in[n%3:], in[:n%3])
		if !slices.Equal(got, want) {
			t.Errorf("n=%d: %v, want %v", n, addrs(got), addrs(want))
		}
	}
	if !slices.Equal(in, orig) {
		t.Fatal("Order modified its input")
	}
	if got := Order(nil, 7); len(got) != 0 {
		t.Fatalf("Order(nil) = %v", got)
	}
}

func TestOrderKeepsPriorityGroups(t *testing.T) {
	in := []Target{
		tg("192.0.2.30:2083", 20, 5, "c"),
		tg("192.0.2.10:2083", 10, 1, "a"),
		tg("192.0.2.20:2083", 10, 9, "b"),
		tg("192.0.2.21:2083", 10, 9, "b"),
		tg("192.0.2.40:2083", 30, 0, "d"),
	}
	for n := range uint64(200) {
		got := Order(in, n)
		if len(got) != len(in) {
			t.Fatalf("n=%d: %d targets, want %d", n, len(got), len(in))
		}
		if !slices.IsSortedFunc(got, func(a, b Target) int { return int(a.Priority) - int(b.Priority) }) {
			t.Fatalf("n=%d: priorities out of order: %v", n, got)
		}
		// A record's addresses stay together.
		i := slices.IndexFunc(got, func(x Target) bool { return x.Host == "b" })
		if got[i+1].Host != "b" {
			t.Fatalf("n=%d: addresses of one SRV target split: %v", n, got)
		}
	}
}

func TestOrderWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint16
		want    []float64 // share of first picks
	}{
		{"60/30/10", []uint16{60, 30, 10}, []float64{.6, .3, .1}},
		{"equal", []uint16{1, 1}, []float64{.5, .5}},
		{"zero weight is last resort", []uint16{5, 0}, []float64{1, 0}},
		{"all zero rotate", []uint16{0, 0, 0, 0}, []float64{.25, .25, .25, .25}},
	}
	const N = 10000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []Target
			for i, w := range tc.weights {
				in = append(in, tg("192.0.2."+string(rune('1'+i))+":2083", 1, w, string(rune('a'+i))))
			}
			counts := make([]int, len(in))
			for n := range uint64(N) {
				got := Order(in, n)
				counts[got[0].Host[0]-'a']++
			}
			for i, c := range counts {
				if share := float64(c) / N; math.Abs(share-tc.want[i]) > 0.01 {
					t.Errorf("target %d: share %.3f, want %.2f (counts %v)", i, share, tc.want[i], counts)
				}
			}
		})
	}
}

// A handful of consecutive connections already spread over every address of
// two equally weighted records.
func TestOrderSpreadsConsecutive(t *testing.T) {
	in := []Target{
		tg("192.0.2.1:2083", 1, 50, "a"), tg("192.0.2.2:2083", 1, 50, "a"),
		tg("192.0.2.3:2083", 1, 50, "b"), tg("192.0.2.4:2083", 1, 50, "b"),
	}
	firsts := map[netip.AddrPort]int{}
	for n := range uint64(8) {
		firsts[Order(in, n)[0].Addr]++
	}
	if len(firsts) != 4 {
		t.Fatalf("8 connections started at %d distinct addresses, want all 4: %v", len(firsts), firsts)
	}
}

func TestOrderDeterministicAndInputOrderFree(t *testing.T) {
	in := []Target{tg("192.0.2.1:2083", 1, 10, "a"), tg("192.0.2.2:2083", 1, 20, "b"), tg("192.0.2.3:2083", 1, 30, "c")}
	rev := slices.Clone(in)
	slices.Reverse(rev)
	for n := range uint64(50) {
		if a, b := Order(in, n), Order(rev, n); !slices.Equal(a, b) {
			t.Fatalf("n=%d: order depends on input order: %v vs %v", n, a, b)
		}
	}
}

func BenchmarkOrder(b *testing.B) {
	in := []Target{
		tg("192.0.2.1:2083", 10, 60, "a"), tg("192.0.2.2:2083", 10, 60, "a"),
		tg("192.0.2.3:2083", 10, 30, "b"), tg("192.0.2.4:2083", 10, 10, "c"),
		tg("192.0.2.5:2083", 20, 0, "d"),
	}
	b.ReportAllocs()
	var n uint64
	for b.Loop() {
		_ = Order(in, n)
		n++
	}
}
