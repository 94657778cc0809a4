package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"mxedge/cache"
)

// Tombstones across restarts. A tombstone (an upstream Access-Reject, forgotten everywhere) is
// what keeps a partitioned edge that still holds the rejected client's record from bringing it
// back; one held only in memory is lost when the edge restarts, and the first anti-entropy round
// after the restart would take the stale record from the peer. So they are kept in a small bbolt
// file of their own (Options.StatePath, beside the cache): loaded at start (those older than
// TombstoneTTL, the cache's TTL, are dropped, since no record they could forbid outlives it),
// written by the cluster's tick every 500 ms in one transaction (never on the request path; a
// crash loses at most the tombstones of that half second, which the next Reject or the
// forgetting peer's anti-entropy restore), and bounded by MaxTombstones like the map.
//
// Value layout: method 1 octet, at 8 octets (Unix nanoseconds, big-endian), mac and identity
// each a uvarint length and text. The key is tombstone.key().

var bucketTombs = []byte("tombstones")

type tombDB struct{ db *bolt.DB }

// openTombDB opens (creating) the file and returns the tombstones still in force after limit.
func openTombDB(path string, limit time.Time) (*tombDB, []tombstone, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("cluster: %s is locked by another process", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: open %s: %w", path, err)
	}
	var out []tombstone
	var stale [][]byte
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTombs)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			t, err := decodeTomb(v)
			if err != nil || t.At.Before(limit) || t.key() != string(k) {
				stale = append(stale, append([]byte(nil), k...))
				return nil
			}
			out = append(out, t)
			return nil
		})
	})
	if err == nil && len(stale) > 0 {
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketTombs)
			for _, k := range stale {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("cluster: read %s: %w", path, err)
	}
	return &tombDB{db: db}, out, nil
}

func encodeTomb(t tombstone) []byte {
	w := writer{[]byte{byte(t.Method)}}
	w.b = binary.BigEndian.AppendUint64(w.b, uint64(t.At.UnixNano()))
	w.str(t.MAC)
	w.str(t.Identity)
	return w.b
}

func decodeTomb(v []byte) (tombstone, error) {
	r := &reader{b: v}
	var t tombstone
	t.Method = cache.Method(r.byte())
	at := r.n(8)
	if r.err == nil {
		t.At = time.Unix(0, int64(binary.BigEndian.Uint64(at)))
	}
	t.MAC = r.str(maxName)
	t.Identity = r.str(maxName)
	switch {
	case r.err != nil:
		return tombstone{}, r.err
	case len(r.b) != 0:
		return tombstone{}, fmt.Errorf("%w: trailing octets", ErrMalformed)
	case t.Method != cache.MethodMAB && t.Method != cache.MethodEAPTLS:
		return tombstone{}, fmt.Errorf("%w: tombstone method %d", ErrMalformed, t.Method)
	}
	return t, nil
}

// flushTombs writes the tombstone changes since the last flush.
func (c *Cluster) flushTombs() {
	c.tmu.Lock()
	db := c.tdb
	if db == nil || len(c.tdirty) == 0 {
		c.tmu.Unlock()
		return
	}
	dirty := c.tdirty
	c.tdirty = map[string]*tombstone{}
	c.tmu.Unlock()
	err := db.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTombs)
		for k, t := range dirty {
			var err error
			if t == nil {
				err = b.Delete([]byte(k))
			} else {
				err = b.Put([]byte(k), encodeTomb(*t))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.opts.Logger.Error("cluster tombstones not saved", "err", err)
		c.tmu.Lock()
		for k, t := range dirty { // again at the next tick, unless changed since
			if _, ok := c.tdirty[k]; !ok {
				c.tdirty[k] = t
			}
		}
		c.tmu.Unlock()
	}
}

// closeTombs writes what is pending and closes the file (idempotent).
func (c *Cluster) closeTombs() {
	c.flushTombs()
	c.tmu.Lock()
	db := c.tdb
	c.tdb = nil
	c.tmu.Unlock()
	if db != nil {
		if err := db.db.Close(); err != nil {
			c.opts.Logger.Warn("cluster tombstones close failed", "err", err)
		}
	}
}
