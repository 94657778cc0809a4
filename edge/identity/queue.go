package identity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The queue's bbolt layout: bucket "events", key the 8-byte big-endian sequence number, value
// [kind][uvarint key length][session key][payload]. Sequence numbers only grow (bbolt's bucket
// sequence), so the cursor order is the arrival order.
var bucketEvents = []byte("events")

// Errors of the queue.
var (
	ErrQueueRecord = errors.New("identity: queue record malformed")
	ErrClosed      = errors.New("identity: closed")
)

// item is one queued event.
type item struct {
	seq     uint64
	kind    Kind
	key     string // session key: order is kept per key
	payload []byte // the event's JSON
}

func (it item) encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(it.key)+len(it.payload))
	b = append(b, byte(it.kind))
	b = binary.AppendUvarint(b, uint64(len(it.key)))
	b = append(b, it.key...)
	return append(b, it.payload...)
}

func decodeItem(k, v []byte) (item, error) {
	if len(k) != 8 || len(v) < 2 {
		return item{}, ErrQueueRecord
	}
	it := item{seq: binary.BigEndian.Uint64(k), kind: Kind(v[0])}
	if it.kind < KindConnect || it.kind > KindDisconnect {
		return item{}, ErrQueueRecord
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)-1-w) || w != uvarintLen(n) {
		return item{}, ErrQueueRecord
	}
	off := 1 + w
	it.key = string(v[off : off+int(n)])
	it.payload = append([]byte(nil), v[off+int(n):]...)
	return it, nil
}

// uvarintLen is the length of n's canonical uvarint: a longer encoding of the same value is not
// one this package wrote.
func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// queue is one sink's durable queue of events.
type queue struct {
	db  *bolt.DB
	max int

	mu        sync.Mutex
	n         int
	coalesced uint64 // superseded updates removed to make room
	dropped   uint64 // events removed to make room when no update could go
}

// openQueue opens (creating) the queue at path, bounded to max events.
func openQueue(path string, max int) (*queue, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("identity: queue %s: %w", path, err)
	}
	q := &queue{db: db, max: max}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEvents)
		if err != nil {
			return err
		}
		q.n = b.Stats().KeyN
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("identity: queue %s: %w", path, err)
	}
	return q, nil
}

func (q *queue) close() error { return q.db.Close() }

// len is the number of events queued.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// counts returns the coalesced and dropped totals.
func (q *queue) counts() (coalesced, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.coalesced, q.dropped
}

// append stores items in one transaction (one fsync for the batch) and keeps the bound: first
// the oldest updates that a later event of their session supersedes are removed (the session's
// state is still told by that later event), then, if still over, the oldest events. It returns
// how many of each it removed.
func (q *queue) append(items []item) (coalesced, dropped int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	err = q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for i := range items {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			items[i].seq = seq
			if err := b.Put(seqKey(seq), items[i].encode()); err != nil {
				return err
			}
		}
		n := q.n + len(items)
		if n > q.max {
			c, d, err := makeRoom(b, n-q.max)
			if err != nil {
				return err
			}
			coalesced, dropped = c, d
			n -= c + d
		}
		q.n = n
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("identity: queue append: %w", err)
	}
	q.coalesced += uint64(coalesced)
	q.dropped += uint64(dropped)
	return coalesced, dropped, nil
}

// makeRoom removes need events: superseded updates first, oldest first; then the oldest events.
// An undecodable record can never be delivered, so it goes first (counted as dropped).
func makeRoom(b *bolt.Bucket, need int) (coalesced, dropped int, err error) {
	type hdr struct {
		k    []byte
		seq  uint64
		kind Kind
		key  string
		bad  bool
	}
	var all []hdr
	last := map[string]uint64{} // session key -> its newest event
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		it, err := decodeItem(k, v)
		if err != nil {
			all = append(all, hdr{k: append([]byte(nil), k...), bad: true})
			continue
		}
		all = append(all, hdr{k: append([]byte(nil), k...), seq: it.seq, kind: it.kind, key: it.key})
		last[it.key] = it.seq
	}
	gone := make([]bool, len(all))
	for i, h := range all {
		if coalesced+dropped >= need {
			break
		}
		switch {
		case h.bad:
			gone[i] = true
			dropped++
		case h.kind == KindUpdate && last[h.key] > h.seq:
			gone[i] = true
			coalesced++
		}
	}
	for i := range all {
		if coalesced+dropped >= need {
			break
		}
		if !gone[i] {
			gone[i] = true
			dropped++
		}
	}
	for i, h := range all {
		if gone[i] {
			if err := b.Delete(h.k); err != nil {
				return 0, 0, err
			}
		}
	}
	return coalesced, dropped, nil
}

// peek returns up to n of the oldest events, in order.
func (q *queue) peek(n int) ([]item, error) {
	var out []item
	err := q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			it, err := decodeItem(k, v)
			if err != nil {
				// Never delivered; remove deletes it with the batch it sits in.
				it = item{kind: 0}
				if len(k) == 8 {
					it.seq = binary.BigEndian.Uint64(k)
				}
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("identity: queue read: %w", err)
	}
	return out, nil
}

// remove deletes delivered events.
func (q *queue) remove(items []item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	removed := 0
	err := q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for _, it := range items {
			k := seqKey(it.seq)
			if b.Get(k) == nil {
				continue // already gone (made room for)
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("identity: queue delete: %w", err)
	}
	q.n -= removed
	return nil
}
