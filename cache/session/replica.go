package session

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Replication of the table across a cluster of edges (docs/cluster.md). Every record written on
// an edge of a cluster carries its name in the cluster (Origin, OriginID), the edge that wrote it
// last and the hybrid-clock Stamp of that write; Share hands it to the cluster, and peers merge it
// through their own writer (Update kind KindReplica). The merge rule:
//
//   - the record with the later Stamp wins; equal stamps go to the record whose replicated
//     encoding sorts last, so every edge keeps the same one whatever order copies arrive in;
//   - reconciliation is the exception: Reconcile, ReconcileAttempts and ReconcileAt come from the
//     copy with the later (Authorized, ReconcileAt, Reconcile, ReconcileAttempts), so an edge's
//     "reconciled" mark survives an accounting update another edge wrote later from a copy that
//     had not seen the mark yet, while a new local admission (a later Authorized) starts over.
//
// Both parts are maxima over total orders, so the result does not depend on the order merges
// happen in, and edges that saw the same copies hold the same record.

// originPrefix is the origin index key of a record's name in the cluster.
func originPrefix(origin string, id uint64) []byte {
	return (&keyBuilder{}).str(origin).id(id)
}

// stampLocal gives a record this edge writes its replication fields: its name (records written
// before the cluster was configured get theirs now), this edge as writer, and a stamp later than
// both the clock and the stamp of the record it replaces.
func (s *Store) stampLocal(r, old *Record, hasOld bool) {
	if s.opts.Node == "" {
		return
	}
	if r.Origin == "" {
		r.Origin, r.OriginID = s.opts.Node, r.ID
	}
	r.Edge = s.opts.Node
	st := s.now().UTC()
	if hasOld && !st.After(old.Stamp) {
		st = old.Stamp.Add(time.Nanosecond)
	}
	r.Stamp = st
}

// exported is r as peers see it: its name filled in for a record written before the cluster was
// configured, its stamp the last update's when it has none.
func (s *Store) exported(r *Record) {
	if r.Origin == "" && s.opts.Node != "" {
		r.Origin, r.OriginID = s.opts.Node, r.ID
	}
	if r.Stamp.IsZero() {
		r.Stamp = r.Updated
	}
}

// MarshalReplica encodes r for a peer (codec version 2; the local ID is replaced by OriginID,
// since IDs are each edge's own). r must carry its Origin.
func MarshalReplica(r Record) ([]byte, error) {
	if r.Origin == "" {
		return nil, fmt.Errorf("%w: replica without origin", ErrBadRecord)
	}
	r.ID = r.OriginID
	return appendRecord(nil, &r)
}

// UnmarshalReplica decodes what MarshalReplica wrote; the result is ready for an Update of kind
// KindReplica. Bad input returns an error wrapping ErrBadRecord or ErrUnknownVersion.
func UnmarshalReplica(b []byte) (Record, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return Record{}, err
	}
	if r.Origin == "" {
		return Record{}, fmt.Errorf("%w: replica without origin", ErrBadRecord)
	}
	r.ID = r.OriginID // the sender's ID means nothing here
	return r, nil
}

// replicaEncoding is the encoding the tie-break compares: the record under its cluster name.
func replicaEncoding(r Record) []byte {
	r.ID = r.OriginID
	b, _ := appendRecord(nil, &r)
	return b
}

// laterWrite reports whether a wins over b by the merge rule's first part.
func laterWrite(a, b *Record) bool {
	switch {
	case a.Stamp.After(b.Stamp):
		return true
	case a.Stamp.Before(b.Stamp):
		return false
	}
	return bytes.Compare(replicaEncoding(*a), replicaEncoding(*b)) > 0
}

// laterReconcile reports whether a's reconciliation fields are newer than b's.
func laterReconcile(a, b *Record) bool {
	if !a.Authorized.Equal(b.Authorized) {
		return a.Authorized.After(b.Authorized)
	}
	if !a.ReconcileAt.Equal(b.ReconcileAt) {
		return a.ReconcileAt.After(b.ReconcileAt)
	}
	if a.Reconcile != b.Reconcile {
		return a.Reconcile > b.Reconcile
	}
	return a.ReconcileAttempts > b.ReconcileAttempts
}

// Resolve returns what the merge rule makes of two copies of one record (the same Origin and
// OriginID), whatever their order; the result has a's ID.
func Resolve(a, b Record) Record {
	id := a.ID
	w, l := a, b
	if laterWrite(&b, &a) {
		w, l = b, a
	}
	if laterReconcile(&l, &w) {
		w.Reconcile, w.ReconcileAttempts, w.ReconcileAt = l.Reconcile, l.ReconcileAttempts, l.ReconcileAt
	}
	w.ID = id
	w.Class = slices.Clone(w.Class)
	return w
}

// mergeReplica merges a peer's copy of a record inside t.
func (t *txn) mergeReplica(in *Record) error {
	if in.Origin == "" {
		t.s.mergeRefused.Add(1)
		return fmt.Errorf("%w: replica without origin", ErrBadRecord)
	}
	in.ID = in.OriginID
	if err := in.validate(); err != nil {
		t.s.mergeRefused.Add(1)
		return err
	}
	if !in.Expires.IsZero() && !in.Expires.After(t.s.now()) {
		t.s.mergeRefused.Add(1) // expired: every edge sweeps it by the same Expires
		return nil
	}
	old, found, err := t.byOrigin(in.Origin, in.OriginID)
	if err != nil {
		return err
	}
	if found {
		cur := old
		t.s.exported(&cur)
		r := Resolve(cur, *in)
		if bytes.Equal(replicaEncoding(r), replicaEncoding(cur)) {
			t.s.mergeLost.Add(1)
			return nil
		}
		if err := t.put(&r, &old); err != nil {
			return err
		}
		c := ChangeUpdated
		if old.State.Live() && !r.State.Live() {
			c = ChangeEnded
		}
		t.changes = append(t.changes, change{c: c, prev: &old, cur: &r, merged: true})
		t.s.mergeWon.Add(1)
		return nil
	}
	r := *in
	r.Class = slices.Clone(in.Class)
	if in.Origin != t.s.opts.Node || t.recs.Get(idKey(in.OriginID)) != nil {
		// Another edge's record gets an ID of this table's.
		if r.ID, err = t.nextID(); err != nil {
			return err
		}
	} else if err := t.reserveID(in.OriginID); err != nil {
		// One of ours that is gone here (swept, or the file was lost) but lives on a peer comes
		// back under its own ID, which the next new session must not take.
		return err
	}
	if err := t.admit(); err != nil {
		return err
	}
	if err := t.put(&r, nil); err != nil {
		return err
	}
	t.entries++
	t.changes = append(t.changes, change{c: ChangeCreated, cur: &r, merged: true})
	t.s.mergeWon.Add(1)
	return nil
}

// reserveID makes sure nextID never returns id or less.
func (t *txn) reserveID(id uint64) error {
	t.loadNextID()
	if id < t.next {
		return nil
	}
	t.next, t.nextDirty = id+1, true
	return nil
}

// byOrigin finds the local record named origin/id in the cluster: through the origin index, or,
// for this edge's own records written before it joined a cluster, by its ID.
func (t *txn) byOrigin(origin string, id uint64) (Record, bool, error) {
	if lid, ok := lastID(t.idx[string(bucketOrigin)], originPrefix(origin, id)); ok {
		if r, found, err := t.get(lid); found || err != nil {
			return r, found, err
		}
	}
	if origin == t.s.opts.Node {
		r, found, err := t.get(id)
		if err != nil || !found || r.Origin != "" {
			return Record{}, false, err
		}
		return r, true, nil
	}
	return Record{}, false, nil
}

// MergeReplica merges peers' records in one transaction (Apply with KindReplica updates).
func (s *Store) MergeReplica(recs []Record) error {
	us := make([]Update, len(recs))
	for i := range recs {
		us[i] = Update{Kind: KindReplica, Rec: recs[i]}
	}
	return s.Apply(us)
}

// ListReplica calls fn with every record in its replicated form (anti-entropy), in ID order,
// until fn returns false. Records that do not decode are skipped.
func (s *Store) ListReplica(fn func(Record) bool) error {
	return s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			r, err := decodeRecord(v)
			if err != nil {
				continue
			}
			s.exported(&r)
			if r.Origin == "" {
				continue // outside a cluster: nothing to name it by
			}
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
}
