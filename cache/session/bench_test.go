package session

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkApplyLocalMAB: new MAB sessions admitted locally (a fresh MAC each, User-Name the MAC
// as MAB sends it, no NAS-Port, no accounting), 4,096 per transaction (the tracker's batch, edge/sessions.go) into a
// table that already holds 100,000 of them, with the file synced as the daemon syncs it.
func BenchmarkApplyLocalMAB(b *testing.B) {
	c := &clock{t: t0}
	s := openTest(b, filepath.Join(b.TempDir(), "s.db"), c, func(o *Options) { o.NoSync = false; o.MaxEntries = 10_000_000 })
	const batchLen, prefill = 4096, 100_000
	batch := make([]Update, batchLen)
	i := 0
	fill := func() {
		for j := range batch {
			x := uint32(i) * 2654435761 // scatter the MACs as a site's clients are, not in key order
			mac := fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
			u := accept("sw1", mac, strings.ReplaceAll(mac, ":", ""), DecidedDefault, c.now())
			u.Rec.HasNASPort, u.Rec.NASPortID, u.Rec.Class = false, "", nil
			batch[j] = u
			i++
		}
	}
	for range prefill / batchLen {
		fill()
		apply(b, s, batch...)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		fill()
		b.StartTimer()
		apply(b, s, batch...)
		n += batchLen
		c.add(time.Millisecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/update")
}
