package cluster

import (
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
)

// Anti-entropy. memberlist's push/pull exchanges each node's LocalState with one random peer every
// SyncInterval, in both directions. The state here is a digest, not the data: entries (records and
// tombstones) are spread over digestBuckets buckets by a hash of their key, and each bucket is
// summarised by its count and the XOR of its entries' hashes (key and stamp). The receiving node
// compares the digest with its own and asks the sender for the buckets that differ (a reliable
// user message); the sender answers with those buckets' entries, which merge under the usual
// rule. Both sides do this, so one exchange repairs both. A digest is 3 KiB whatever the cache
// holds; a bucket pulled is 1/256 of the entries.
const digestBuckets = 256

func foldIdentity(s string) string { return strings.ToLower(s) }

func bucketOf(key string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return uint16(h.Sum32() % digestBuckets)
}

func entryHash(key string, at time.Time) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(at.UnixNano()))
	h.Write(b[:])
	return h.Sum64()
}

// sessionKey is the digest key of a session record: its name in the cluster ("s:" cannot collide
// with the cache's keys or the tombstones').
func sessionKey(r *session.Record) string {
	return "s:" + r.Origin + "/" + strconv.FormatUint(r.OriginID, 10)
}

// addSession adds a session record; its hash covers the reconciliation mark as well as the stamp,
// since the merge rule can give a record another's mark without changing its stamp.
func (d *digest) addSession(r *session.Record) {
	k := sessionKey(r)
	s := &d.buckets[bucketOf(k)]
	s.count++
	s.hash ^= entryHash(k, r.Stamp) ^ entryHash(k+"|r", r.ReconcileAt.Add(time.Duration(r.Reconcile)))
}

func (d *digest) add(key string, at time.Time) {
	s := &d.buckets[bucketOf(key)]
	s.count++
	s.hash ^= entryHash(key, at)
}

// differing returns the buckets where d and o disagree.
func (d *digest) differing(o *digest) []uint16 {
	var out []uint16
	for i := range d.buckets {
		if d.buckets[i] != o.buckets[i] {
			out = append(out, uint16(i))
		}
	}
	return out
}

// recordKey is the digest key of a record the cache gave (already normalised): the record's
// identity in the cache (docs/cache.md: a MAB record by MAC, an EAP-TLS record by MAC and
// identity, or by identity alone). Tombstones use tombstone.key ("fm:", "fe:"), which cannot
// collide with these.
func recordKey(r cache.Record) (string, bool) {
	switch {
	case r.MAC == "":
		return "i:" + foldIdentity(r.Identity), r.Identity != ""
	case r.Method == cache.MethodEAPTLS:
		return "e:" + r.MAC + "|" + foldIdentity(r.Identity), true
	}
	return "m:" + r.MAC, true
}

// localDigest summarises the store's live records and the live tombstones. A record a tombstone
// forbids (written to the cache around the cluster: a cloud cache sync, `mxedge cache import`) is
// removed on the way, so the tombstone holds here too and the digests can agree.
func (c *Cluster) localDigest() (*digest, error) {
	d := &digest{node: c.opts.Name}
	var buried []cache.Record
	err := c.opts.Store.List(func(r cache.Record) bool {
		if c.buried(r) {
			buried = append(buried, r)
			return true
		}
		if k, ok := recordKey(r); ok {
			d.add(k, r.LastAuthorized)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, r := range buried {
		mac, ident := r.MAC, r.Identity
		if _, err := c.opts.Store.ForgetBefore(r.Method, mac, ident, r.LastAuthorized.Add(1)); err != nil {
			c.opts.Logger.Warn("cluster forget failed", "mac", mac, "user", ident, "err", err)
		}
	}
	c.tmu.Lock()
	for k, t := range c.tombs {
		d.add(k, t.At)
	}
	c.tmu.Unlock()
	if c.opts.Sessions != nil {
		now := time.Now()
		err := c.opts.Sessions.ListReplica(func(r session.Record) bool {
			if unexpired(&r, now) {
				d.addSession(&r)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// unexpired reports whether a session record is still to be replicated: one expired but not yet swept
// is left out, as its peers refuse it.
func unexpired(r *session.Record, now time.Time) bool {
	return r.Expires.IsZero() || r.Expires.After(now)
}

// bucketEntries returns every entry of the wanted buckets.
func (c *Cluster) bucketEntries(want []uint16) ([]entry, error) {
	var set [digestBuckets]bool
	for _, b := range want {
		set[b] = true
	}
	var out []entry
	err := c.opts.Store.List(func(r cache.Record) bool {
		if k, ok := recordKey(r); ok && set[bucketOf(k)] {
			out = append(out, entry{rec: r})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	c.tmu.Lock()
	for k, t := range c.tombs {
		if set[bucketOf(k)] {
			out = append(out, entry{forget: true, tomb: t})
		}
	}
	c.tmu.Unlock()
	if c.opts.Sessions != nil {
		now := time.Now()
		err := c.opts.Sessions.ListReplica(func(r session.Record) bool {
			if unexpired(&r, now) && set[bucketOf(sessionKey(&r))] {
				out = append(out, entry{sess: &r})
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
