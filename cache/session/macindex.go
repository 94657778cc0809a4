package session

import (
	"slices"
	"sync"
)

// macIndex is the MAC index, held in memory and rebuilt from the records when the file is opened
// (recount), not kept in the file. It is the one index whose keys arrive in random order for
// every new session (each MAB grant is a MAC not seen before): as a B+tree in the file, a batch of
// new sessions dirtied nearly every leaf of it, so each commit rewrote the whole index, two thirds
// of a new session's cost (BenchmarkApplyLocalMAB). Held here it costs a map slot (about 20
// octets a MAC: TestMACIndexMemory) and the scan at Open that counting the records already did.
//
// The writer changes it inside its transaction, so the transaction's later updates see its own
// new sessions, and undoes those changes if the transaction does not commit (txn.undoMACs).
// Readers (Find) take the read lock; one that runs during a transaction may see an ID whose record
// its snapshot of the file does not hold yet, and skips it, as it skips any ID without a record.
type macIndex struct {
	mu sync.RWMutex
	// one holds the lowest ID of each MAC (most MACs have one record: 16 octets a slot), more the
	// others of a MAC that has several, ascending.
	one  map[[6]byte]uint64
	more map[[6]byte][]uint64
}

func newMACIndex() *macIndex {
	return &macIndex{one: map[[6]byte]uint64{}, more: map[[6]byte][]uint64{}}
}

// add indexes id under m and reports whether it was not there already.
func (x *macIndex) add(m [6]byte, id uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	first, ok := x.one[m]
	switch {
	case !ok:
		x.one[m] = id
		return true
	case id == first:
		return false
	case id < first:
		x.one[m] = id
		x.more[m] = slices.Insert(x.more[m], 0, first)
		return true
	}
	rest := x.more[m]
	i, found := slices.BinarySearch(rest, id)
	if found {
		return false
	}
	x.more[m] = slices.Insert(rest, i, id)
	return true
}

// remove drops id from m's entries and reports whether it was there.
func (x *macIndex) remove(m [6]byte, id uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	first, ok := x.one[m]
	if !ok {
		return false
	}
	rest := x.more[m]
	if id == first {
		if len(rest) == 0 {
			delete(x.one, m)
			return true
		}
		x.one[m] = rest[0]
		rest = rest[1:]
	} else {
		i, found := slices.BinarySearch(rest, id)
		if !found {
			return false
		}
		rest = slices.Delete(rest, i, i+1)
	}
	if len(rest) == 0 {
		delete(x.more, m)
	} else {
		x.more[m] = rest
	}
	return true
}

// last appends up to n of m's IDs to dst, highest first, and returns it: the writer matches
// every update with a MAC through it, into a buffer on its stack.
func (x *macIndex) last(dst []uint64, m [6]byte, n int) []uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	first, ok := x.one[m]
	if !ok {
		return dst
	}
	rest := x.more[m]
	for i := len(rest) - 1; i >= 0 && n > 0; i-- {
		dst = append(dst, rest[i])
		n--
	}
	if n > 0 {
		dst = append(dst, first)
	}
	return dst
}

// all returns m's IDs, ascending.
func (x *macIndex) all(m [6]byte) []uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	first, ok := x.one[m]
	if !ok {
		return nil
	}
	return append([]uint64{first}, x.more[m]...)
}

// len is the number of MACs indexed.
func (x *macIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.one)
}

// macOp is one change a transaction made to the index, kept to undo it.
type macOp struct {
	add bool
	mac [6]byte
	id  uint64
}

// recordMACs moves r's MAC entry from old's (nil: a new record; cur nil: a removed one), noting
// each change so a transaction that does not commit can undo it.
func (t *txn) recordMACs(old, cur *Record) {
	var om, cm [6]byte
	var oldOK, curOK bool
	if old != nil {
		om, oldOK = parseMAC(old.MAC)
	}
	if cur != nil {
		cm, curOK = parseMAC(cur.MAC)
	}
	if oldOK && curOK && om == cm && old.ID == cur.ID {
		return
	}
	if oldOK && t.s.macs.remove(om, old.ID) {
		t.macOps = append(t.macOps, macOp{mac: om, id: old.ID})
	}
	if curOK && t.s.macs.add(cm, cur.ID) {
		t.macOps = append(t.macOps, macOp{add: true, mac: cm, id: cur.ID})
	}
}

// undoMACs reverts the index changes of a transaction that did not commit, last first.
func (t *txn) undoMACs() {
	for _, op := range slices.Backward(t.macOps) {
		if op.add {
			t.s.macs.remove(op.mac, op.id)
		} else {
			t.s.macs.add(op.mac, op.id)
		}
	}
	t.macOps = nil
}
