package cache

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Replication support: what a cluster of edges (edge/cluster) needs to keep
// every edge's cache the same without a coordinator. The merge rule is
// last-writer-wins on LastAuthorized, which the cluster stamps from a hybrid
// logical clock, so the latest Access-Accept anywhere in the cluster wins
// whatever the edges' clock skew; equal stamps are broken by comparing the
// records' encodings, so every edge picks the same winner.

// MarshalRecord returns the store's versioned binary encoding of r (the same
// codec as on disk, so a peer running the same or a newer mxedge reads it).
func MarshalRecord(r Record) ([]byte, error) {
	nr, err := normalize(r)
	if err != nil {
		return nil, err
	}
	return encodeRecord(nr)
}

// UnmarshalRecord decodes what MarshalRecord wrote, validating it as Upsert
// would; bad input returns an error wrapping ErrBadRecord or
// ErrUnknownVersion.
func UnmarshalRecord(b []byte) (Record, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return Record{}, err
	}
	return normalize(r)
}

// LearnAt is Learn with the time of the decision given (the cluster's
// hybrid clock) instead of read from Options.Now, so the record stored here
// and the copies sent to the peers carry the same LastAuthorized.
func (s *Store) LearnAt(r Record, at time.Time) {
	nr, err := normalize(r)
	if err != nil {
		s.log.Warn("cache learn rejected", "mac", r.MAC, "user", r.Identity, "err", err)
		return
	}
	if at.IsZero() {
		at = s.now()
	}
	s.enqueue(op{rec: nr, key: recordKey(nr), at: at})
}

// MergeQueued is Merge for one record through the batched writer: it never blocks (the record is
// dropped and counted in Stats.Drops when the queue is full) and shares the writer's transactions
// and fsyncs with Learn, so a peer's stream of decisions costs one commit per batch, not one per
// datagram. Stats.MergeWon and MergeLost count the outcomes.
func (s *Store) MergeQueued(r Record) {
	nr, err := s.prepare(r)
	if err != nil {
		s.mergeLost.Add(1) // expired or invalid: nothing to write
		return
	}
	s.enqueue(op{rec: nr, key: recordKey(nr), at: nr.LastAuthorized, merge: true})
}

func (s *Store) applyMerge(t *txn, o op, old Record, ok bool) error {
	r := o.rec
	if ok {
		enc, err := encodeRecord(r)
		if err != nil || !wins(r, enc, old) {
			s.mergeLost.Add(1)
			return nil
		}
	}
	if !ok && t.recs.Get(o.key) == nil {
		if err := s.admit(t, r.LastAuthorized); err != nil {
			s.mergeLost.Add(1)
			return s.refused(err, r)
		}
	}
	r.FirstSeen = firstSeen(old, ok, r.FirstSeen, r.LastAuthorized)
	s.mergeWon.Add(1)
	return t.replace(o.key, r, old, ok)
}

// MergeReport says what Merge did with each record.
type MergeReport struct {
	Merged  int // written: new here, or newer than the stored entry
	Older   int // skipped: the stored entry wins (authorized later, or the tie-break)
	Expired int // skipped: already expired
	Full    int // skipped: new records the full store could not admit
	Bad     int // skipped: invalid
}

// Merge writes records learned by another edge in one transaction, record by
// record under the replication rule: the later LastAuthorized wins; on equal
// times the record whose encoding sorts last wins, so edges that see the same
// two records in any order keep the same one. Times are kept as given
// (clamped to now and to the TTL as Upsert clamps them). The error is non-nil
// only for a database failure.
func (s *Store) Merge(recs []Record) (MergeReport, error) {
	var rep MergeReport
	if s.opts.ReadOnly {
		return rep, ErrReadOnly
	}
	type prepared struct {
		rec Record
		enc []byte
	}
	batch := make([]prepared, 0, len(recs))
	for _, r := range recs {
		nr, err := s.prepare(r)
		switch {
		case errors.Is(err, ErrExpired):
			rep.Expired++
			continue
		case err != nil:
			rep.Bad++
			continue
		}
		enc, err := encodeRecord(nr)
		if err != nil {
			rep.Bad++
			continue
		}
		batch = append(batch, prepared{nr, enc})
	}
	if len(batch) == 0 {
		return rep, nil
	}
	err := s.update(func(t *txn) error {
		for _, p := range batch {
			rk := recordKey(p.rec)
			old, ok, _ := t.get(rk)
			if ok && !wins(p.rec, p.enc, old) {
				rep.Older++
				continue
			}
			if !ok && t.recs.Get(rk) == nil {
				if err := s.admit(t, p.rec.LastAuthorized); errors.Is(err, ErrFull) {
					rep.Full++
					continue
				} else if err != nil {
					return err
				}
			}
			if err := t.replace(rk, p.rec, old, ok); err != nil {
				return err
			}
			rep.Merged++
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("cache: merge: %w", err)
	}
	return rep, nil
}

// wins reports whether incoming (encoded as enc) replaces stored.
func wins(incoming Record, enc []byte, stored Record) bool {
	switch {
	case incoming.LastAuthorized.After(stored.LastAuthorized):
		return true
	case incoming.LastAuthorized.Before(stored.LastAuthorized):
		return false
	}
	old, err := encodeRecord(stored)
	if err != nil {
		return true
	}
	return bytes.Compare(enc, old) > 0
}

// ForgetBefore removes, synchronously, what ForgetMAB (method MAB, by mac) or
// ForgetIdentity (method EAP-TLS, by identity) would remove, but only records
// last authorized before at: a Reject seen by one edge does not undo an
// Access-Accept another edge saw later. It reports whether anything was
// removed.
func (s *Store) ForgetBefore(method Method, mac, identity string, at time.Time) (bool, error) {
	if s.opts.ReadOnly {
		return false, ErrReadOnly
	}
	var removed bool
	err := s.update(func(t *txn) error {
		var keys [][]byte
		switch method {
		case MethodMAB:
			m, err := parseMAC(mac)
			if err != nil {
				return nil
			}
			keys = [][]byte{macKey(m)}
		case MethodEAPTLS:
			if identity == "" {
				return nil
			}
			keys = allIdentityKeys(t.ident, identity)
		default:
			return nil
		}
		for _, rk := range keys {
			old, ok, err := t.get(rk)
			if err != nil || !ok || old.Method != method || !old.LastAuthorized.Before(at) {
				continue
			}
			if err := t.remove(rk, old, true); err != nil {
				return err
			}
			removed = true
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("cache: forget: %w", err)
	}
	return removed, nil
}
