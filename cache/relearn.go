package cache

import (
	"hash/maphash"
	"sync"
	"time"
)

// DefaultRelearn is how long a learned record is not written again when the cloud answers the same
// client with the same decision (Options.Relearn).
const DefaultRelearn = time.Minute

// maxRelearnMemo bounds the clients the memo remembers; when it is full it starts over, which
// costs at most one extra write per client.
const maxRelearnMemo = 1 << 16

// relearnMemo remembers what was queued for each record key recently, so that a client
// re-authenticating over and over (a MAB storm, a flapping port, a load test) costs the writer one
// bbolt write per Relearn instead of one per Access-Accept. Skipping a learn identical but for its
// times only delays the TTL refresh (LastAuthorized, Expires) by at most Relearn, which is
// small against a TTL of days.
type relearnMemo struct {
	every time.Duration // <= 0: every learn is written
	seed  maphash.Seed

	mu sync.Mutex
	m  map[string]relearnMark
}

type relearnMark struct {
	sum uint64 // of everything in the record but its times
	at  int64  // Unix nanos when it was queued
}

func newRelearnMemo(every time.Duration) *relearnMemo {
	return &relearnMemo{every: every, seed: maphash.MakeSeed(), m: make(map[string]relearnMark)}
}

// sum digests the record r as the writer would store it, times excepted.
func (m *relearnMemo) sum(r *Record) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(r.MAC)
	h.WriteByte(0)
	h.WriteString(r.Identity)
	h.WriteByte(0)
	h.WriteByte(byte(r.Method))
	h.WriteString(r.NAS)
	h.WriteByte(0)
	h.WriteString(r.Site)
	h.WriteByte(0)
	for _, a := range r.Attrs {
		h.WriteByte(a.Type)
		h.WriteByte(byte(a.Vendor >> 24))
		h.WriteByte(byte(a.Vendor >> 16))
		h.WriteByte(byte(a.Vendor >> 8))
		h.WriteByte(byte(a.Vendor))
		h.WriteByte(a.VendorType)
		h.WriteByte(a.Tag)
		h.WriteByte(byte(len(a.Value)))
		h.Write(a.Value)
	}
	return h.Sum64()
}

// fresh reports whether r (under key) was queued identically less than every ago; when not, it
// remembers r as queued at now. The caller forgets it again (drop) if the queue refuses it.
func (m *relearnMemo) fresh(key []byte, r *Record, now time.Time) bool {
	if m.every <= 0 {
		return false
	}
	sum, t := m.sum(r), now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if mk, ok := m.m[string(key)]; ok && mk.sum == sum && t-mk.at < int64(m.every) && t >= mk.at {
		return true
	}
	if len(m.m) >= maxRelearnMemo {
		clear(m.m)
	}
	m.m[string(key)] = relearnMark{sum: sum, at: t}
	return false
}

// drop forgets key: its learn was not queued after all.
func (m *relearnMemo) drop(key []byte) {
	m.mu.Lock()
	delete(m.m, string(key))
	m.mu.Unlock()
}

// reset forgets everything: a forget, a delete, an import or a failed commit may have changed
// what is stored, so the next learn of any client is written.
func (m *relearnMemo) reset() {
	m.mu.Lock()
	clear(m.m)
	m.mu.Unlock()
}
