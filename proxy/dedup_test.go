package proxy

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable time for the duplicate cache.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func dupKeyN(n uint64) dupKey                { return dupKeyFrom(netip.MustParseAddrPort("192.0.2.1:1645"), n) }
func dupKeyFrom(src netip.AddrPort, n uint64) dupKey {
	k := dupKey{src: src, id: uint8(n)}
	// Request Authenticators are random (RFC 2865 §3): spread over the shards like them.
	binary.BigEndian.PutUint64(k.auth[:], n*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(k.auth[8:], n)
	return k
}

func TestDupCacheVerdicts(t *testing.T) {
	clk := newFakeClock()
	var evicted atomic.Uint64
	c := newDupCache(0, 10*time.Second, clk.now, &evicted)
	k := dupKeyN(1)
	resp := []byte("answer")

	steps := []struct {
		name    string
		do      func()
		verdict dupVerdict
		resp    []byte
	}{
		{name: "in flight absorbs", verdict: dupInFlight},
		{name: "answered resends", do: func() {}, verdict: dupAnswered, resp: resp},
		{name: "still answered just before the window ends", do: func() { clk.advance(10*time.Second - time.Nanosecond) }, verdict: dupAnswered, resp: resp},
		{name: "processed again once the window is over, even unswept", do: func() { clk.advance(time.Nanosecond) }, verdict: dupNew},
	}
	h, v, _, _ := c.begin(k, clk.now())
	if v != dupNew {
		t.Fatalf("first begin: verdict %v, want new", v)
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if i == 1 {
				c.complete(h, resp)
			}
			if st.do != nil {
				st.do()
			}
			_, v, got, _ := c.begin(k, clk.now())
			if v != st.verdict || string(got) != string(st.resp) {
				t.Fatalf("verdict %v resp %q, want %v %q", v, got, st.verdict, st.resp)
			}
		})
	}

	t.Run("unanswered is processed again", func(t *testing.T) {
		k := dupKeyN(2)
		h, _, _, _ := c.begin(k, clk.now())
		c.complete(h, nil)
		if _, v, _, _ := c.begin(k, clk.now()); v != dupNew {
			t.Fatalf("verdict %v, want new", v)
		}
	})
	if n := evicted.Load(); n != 0 {
		t.Fatalf("evicted %d with a cache far from full", n)
	}
}

// TestDupCacheBounded: whatever the rate, the cache holds at most its size, evicts oldest first,
// and counts an eviction only for an entry whose window was not over.
func TestDupCacheBounded(t *testing.T) {
	clk := newFakeClock()
	var evicted atomic.Uint64
	const size = 4096
	c := newDupCache(size, 10*time.Second, clk.now, &evicted)
	const n = 50_000
	for i := range uint64(n) {
		h, v, _, _ := c.begin(dupKeyN(i), clk.now())
		if v != dupNew {
			t.Fatalf("request %d: verdict %v, want new", i, v)
		}
		c.complete(h, []byte{byte(i)})
		if got := c.len(); got > size {
			t.Fatalf("after %d requests the cache holds %d, more than its size %d", i+1, got, size)
		}
	}
	if got := c.len(); got < size*9/10 {
		t.Errorf("cache holds %d of %d", got, size)
	}
	// Every shard keeps its newest entries: the last request is answered from the cache, the
	// first was evicted (and is processed again).
	if _, v, _, _ := c.begin(dupKeyN(n-1), clk.now()); v != dupAnswered {
		t.Errorf("newest: verdict %v, want answered", v)
	}
	h, v, _, _ := c.begin(dupKeyN(0), clk.now())
	if v != dupNew {
		t.Errorf("oldest: verdict %v, want new", v)
	}
	c.complete(h, nil)
	if got := evicted.Load(); got < n-size || got > n {
		t.Errorf("evicted %d, want about %d", got, n-c.len())
	}

	// Entries whose window is over are swept, and pushing them out is not an eviction.
	clk.advance(11 * time.Second)
	c.sweep(clk.now())
	if got := c.len(); got != 0 {
		t.Fatalf("after the window and a sweep the cache holds %d", got)
	}
	// One shard, exactly: a full ring of entries whose window is over is pushed out by as many
	// new ones without counting; one more pushes out an entry in its window, which counts.
	shard := &c.shards[0]
	cap := len(shard.ring)
	keys := shardKeys(c, shard, 2*cap+1)
	before := evicted.Load()
	for i, k := range keys {
		if i == cap {
			clk.advance(11 * time.Second)
		}
		h, _, _, _ := c.begin(k, clk.now())
		c.complete(h, []byte{1})
		want := uint64(0)
		if i == 2*cap {
			want = 1
		}
		if got := evicted.Load() - before; got != want {
			t.Fatalf("after %d requests in one shard of %d: evicted %d, want %d", i+1, cap, got, want)
		}
	}
}

// shardKeys returns n keys that land in shard s.
func shardKeys(c *dupCache, s *dupShard, n int) []dupKey {
	var out []dupKey
	for i := uint64(1 << 32); len(out) < n; i++ {
		if k := dupKeyN(i); c.shard(&k) == s {
			out = append(out, k)
		}
	}
	return out
}

// TestDupCacheStaleHandle: a request whose slot was given to a newer one still completes without
// touching the newer entry.
func TestDupCacheStaleHandle(t *testing.T) {
	clk := newFakeClock()
	var evicted atomic.Uint64
	c := newDupCache(minDuplicateCacheSize, time.Second, clk.now, &evicted)
	old := dupKeyN(7)
	hOld, _, _, _ := c.begin(old, clk.now())
	// Fill old's shard until its pending slot is taken.
	s := c.shard(&old)
	var newest dupKey
	var hNew dupHandle
	for i := uint64(1 << 20); s.ring[hOld.idx].seq == hOld.seq; i++ {
		k := dupKeyN(i)
		if c.shard(&k) != s {
			continue
		}
		newest = k
		hNew, _, _, _ = c.begin(k, clk.now())
	}
	if evicted.Load() == 0 {
		t.Fatal("a pending entry pushed out was not counted")
	}
	c.complete(hOld, []byte("old answer"))
	if _, v, _, _ := c.begin(newest, clk.now()); v != dupInFlight {
		t.Fatalf("newest after a stale complete: verdict %v, want in flight", v)
	}
	c.complete(hNew, []byte("new answer"))
	if _, v, got, _ := c.begin(newest, clk.now()); v != dupAnswered || string(got) != "new answer" {
		t.Fatalf("newest: verdict %v resp %q", v, got)
	}
	// old is no longer known: its retransmission is processed again.
	if _, v, _, _ := c.begin(old, clk.now()); v != dupNew {
		t.Fatalf("old: verdict %v, want new", v)
	}
}

// BenchmarkDupCache measures a request's begin+complete at a steady state where the cache is full,
// and the heap the cache holds per entry (bytes/entry) with a 40-byte answer.
func BenchmarkDupCache(b *testing.B) {
	clk := newFakeClock()
	var evicted atomic.Uint64
	resp := make([]byte, 40)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	c := newDupCache(DefaultDuplicateCacheSize, 10*time.Second, clk.now, &evicted)
	var i uint64
	for range 2 * DefaultDuplicateCacheSize {
		h, _, _, _ := c.begin(dupKeyN(i), clk.now())
		c.complete(h, append([]byte(nil), resp...))
		i++
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	perEntry := float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(c.len())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h, _, _, _ := c.begin(dupKeyN(i), clk.now())
		c.complete(h, resp)
		i++
	}
	b.ReportMetric(perEntry, "bytes/entry")
	runtime.KeepAlive(c)
}

// TestDupCacheHashCollision: the shard map is keyed by a hash of the key, so two keys may share
// one. A request whose hash names another request's slot is new, never that request's duplicate,
// and freeing the older slot leaves the newer request's entry in place.
func TestDupCacheHashCollision(t *testing.T) {
	clk := newFakeClock()
	c := newDupCache(minDuplicateCacheSize, 10*time.Second, clk.now, nil)
	a, b := dupKeyN(1), dupKeyN(2)
	for c.shard(&b) != c.shard(&a) { // the same shard, as a real collision would be
		b.auth[0]++
	}
	ha, v, _, _ := c.begin(a, clk.now())
	if v != dupNew {
		t.Fatalf("first request: verdict %v", v)
	}
	c.complete(ha, []byte("answer-a"))
	s := c.shard(&a)
	// Make a's hash b's, as a collision of the two would.
	s.mu.Lock()
	hb := maphash.Comparable(c.seed, b)
	delete(s.m, s.ring[ha.idx].hash)
	s.m[hb] = ha.idx
	s.ring[ha.idx].hash = hb
	s.mu.Unlock()
	// Within a's window: a cache trusting the hash alone would answer b with a's answer.
	h, v, resp, _ := c.begin(b, clk.now())
	if v != dupNew || resp != nil {
		t.Fatalf("colliding request: verdict %v, cached %q; want a new request", v, resp)
	}
	c.complete(h, []byte("answer-b"))
	// Freeing a's slot, the shard's oldest (pushed out early), must not remove b's entry.
	s.mu.Lock()
	c.free(s, ha.idx, clk.now().UnixNano())
	s.mu.Unlock()
	if _, v, resp, _ := c.begin(b, clk.now()); v != dupAnswered || string(resp) != "answer-b" {
		t.Fatalf("retransmission of the colliding request: verdict %v, %q; want answer-b from the cache", v, resp)
	}
	if _, v, _, _ := c.begin(a, clk.now()); v != dupNew {
		t.Fatalf("a after its slot was freed: verdict %v, want new", v)
	}
}
