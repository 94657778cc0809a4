package resolve

import (
	"cmp"
	"slices"
	"strings"
)

// Order returns the targets in the order connection attempts should use
// them. n is a caller-supplied index (the edge's connection number, a hash of
// the edge ID, …): different n spread connections over the targets, the same
// n gives the same order.
//
//   - SRV priority groups are kept: every target of a lower Priority value
//     comes before any target of a higher one (RFC 2782).
//   - Within a group, SRV records (targets sharing Host and port) are chosen
//     with probability proportional to Weight (RFC 2782 weighted selection).
//     Instead of a random number the selection uses the Weyl sequence
//     frac(n·φ): consecutive n land far apart, so even a handful of
//     connections spreads, and the long-run shares converge to the weights.
//     Weight 0 records come after weighted ones; records that all have
//     weight 0 are rotated by n.
//   - The addresses of one record stay together (all addresses of the chosen
//     target before the next target) and are rotated by n, so connections to
//     a name with several A/AAAA records spread round-robin.
//
// Order does not modify targets.
func Order(targets []Target, n uint64) []Target {
	sorted := slices.Clone(targets)
	slices.SortStableFunc(sorted, func(a, b Target) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]Target, 0, len(targets))
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].Priority == sorted[i].Priority {
			j++
		}
		out = appendGroup(out, sorted[i:j], n)
		i = j
	}
	return out
}

// record is the targets of one SRV record (or of one name).
type record struct {
	host    string
	port    uint16
	weight  uint16
	targets []Target
}

func appendGroup(out, group []Target, n uint64) []Target {
	var recs []*record
	for _, t := range group {
		i := slices.IndexFunc(recs, func(r *record) bool { return r.host == t.Host && r.port == t.Addr.Port() })
		if i < 0 {
			recs = append(recs, &record{host: t.Host, port: t.Addr.Port(), weight: t.Weight})
			i = len(recs) - 1
		}
		recs[i].targets = append(recs[i].targets, t)
	}
	// A canonical order makes the result independent of the input order.
	slices.SortFunc(recs, func(a, b *record) int {
		return cmp.Or(strings.Compare(a.host, b.host), cmp.Compare(a.port, b.port))
	})
	if len(recs) == 1 {
		return append(out, rotate(recs[0].targets, n)...)
	}
	for k := uint64(0); len(recs) > 0; k++ {
		var sum uint64
		for _, r := range recs {
			sum += uint64(r.weight)
		}
		if sum == 0 {
			for _, r := range rotate(recs, n) {
				out = append(out, rotate(r.targets, n)...)
			}
			break
		}
		u := unit(n, k)
		x := u * float64(sum)
		var acc uint64
		idx := -1
		for i, r := range recs {
			if r.weight == 0 {
				continue
			}
			acc += uint64(r.weight)
			idx = i
			if float64(acc) > x {
				break
			}
		}
		r := recs[idx]
		w := uint64(r.weight)
		// Where x fell inside this record's share is itself equidistributed:
		// use it to pick the first address.
		pos := max(x-float64(acc-w), 0) / float64(w)
		first := min(uint64(pos*float64(len(r.targets))), uint64(len(r.targets)-1))
		out = append(out, rotate(r.targets, first)...)
		recs = slices.Delete(recs, idx, idx+1)
	}
	return out
}

// unit returns a number in [0, 1): frac(n·φ) for the first pick (a Weyl
// sequence: consecutive n are maximally spread), a SplitMix64 hash of (n, k)
// for the later ones, where only the fallback order is at stake.
func unit(n, k uint64) float64 {
	const phi = 0x9E3779B97F4A7C15 // 2^64/φ
	x := n * phi                   // frac(n/φ)·2^64, the wrap-around is the point
	if k > 0 {
		x = splitmix(x + k*phi)
	}
	return float64(x>>11) / (1 << 53)
}

func splitmix(z uint64) uint64 {
	z += 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func rotate[T any](s []T, n uint64) []T {
	if len(s) < 2 {
		return slices.Clone(s)
	}
	i := int(n % uint64(len(s)))
	return slices.Concat(s[i:], s[:i])
}
