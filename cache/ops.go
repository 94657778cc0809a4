package cache

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// op is one queued request-path operation.
type op struct {
	forget   bool
	merge    bool      // learn from a cluster peer: times as given, the replication rule decides
	rec      Record    // learn: normalized record
	key      []byte    // learn: recordKey(rec)
	method   Method    // forget: only records of this method are removed
	mac      string    // forget (MAB)
	identity string    // forget (EAP-TLS)
	at       time.Time // when the decision was seen
}

// Learn records an upstream Access-Accept: it upserts the client and
// refreshes its TTL (LastAuthorized = now, Expires = now + TTL, FirstSeen
// kept from an existing entry). Non-replayable attributes are dropped. It
// never blocks: the operation is queued for the batched writer, and when the
// queue is full (or the store closed, or the record invalid) it is dropped,
// counted in Stats.Drops and logged at most every 10 seconds.
func (s *Store) Learn(r Record) {
	nr, err := normalize(r)
	if err != nil {
		s.log.Warn("cache learn rejected", "mac", r.MAC, "user", r.Identity, "err", err)
		return
	}
	key, now := recordKey(nr), s.now()
	if s.memo.fresh(key, &nr, now) {
		s.coalesced.Add(1)
		return
	}
	if !s.enqueue(op{rec: nr, key: key, at: now}) {
		s.memo.drop(key)
	}
}

// ForgetMAB queues the removal of the MAB record of mac after an upstream
// Access-Reject of a MAB request for it. Nothing else is touched: not the
// EAP-TLS records of the same MAC, not a record of another method stored
// under the MAC. It never blocks (see Learn).
func (s *Store) ForgetMAB(mac string) {
	if _, err := parseMAC(mac); err != nil {
		return
	}
	s.memo.reset()
	s.enqueue(op{forget: true, method: MethodMAB, mac: mac, at: s.now()})
}

// ForgetIdentity queues the removal of every EAP-TLS record of identity
// (case-insensitive) after an upstream Access-Reject that names it. MAB
// records are not touched. It never blocks (see Learn).
func (s *Store) ForgetIdentity(identity string) {
	if identity == "" {
		return
	}
	s.memo.reset()
	s.enqueue(op{forget: true, method: MethodEAPTLS, identity: identity, at: s.now()})
}

// enqueue queues o for the writer; false means it was dropped (and counted).
func (s *Store) enqueue(o op) bool {
	s.pmu.Lock()
	if s.closed || s.opts.ReadOnly || len(s.pending) >= s.opts.QueueSize {
		s.pmu.Unlock()
		s.dropped()
		return false
	}
	s.pending = append(s.pending, o)
	n := len(s.pending)
	s.pmu.Unlock()
	// Wake the writer when a batch starts (it arms BatchDelay) and when it
	// is full (it commits now). The channel holds one token, so a wake-up
	// is never lost and never blocks.
	if n == 1 || n == s.opts.BatchSize {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return true
}

func (s *Store) dropped() {
	s.drops.Add(1)
	now := s.now().UnixNano()
	last := s.lastDropLog.Load()
	if now-last >= int64(dropLogEvery) && s.lastDropLog.CompareAndSwap(last, now) {
		s.log.Warn("cache queue full, dropping learned decisions", "reason", "queue full")
	}
}

// Flush commits every operation queued before the call, in one transaction,
// and returns when it is durable (fsynced unless NoSync). The writer
// goroutine uses it too, so batches commit in queue order.
func (s *Store) Flush() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.pmu.Lock()
	batch := s.pending
	if len(batch) > 0 {
		s.pending = make([]op, 0, min(cap(batch), s.opts.QueueSize))
	}
	s.pmu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if s.dbClosed {
		s.writeErrs.Add(1)
		return ErrClosed
	}
	sortLearns(batch)
	err := s.update(func(t *txn) error {
		for _, o := range batch {
			if err := s.apply(t, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.writeErrs.Add(1)
		s.memo.reset() // the learns of the batch are lost: write them again when they come
		return fmt.Errorf("cache: commit %d operations: %w", len(batch), err)
	}
	s.commits.Add(1)
	s.committed.Add(uint64(len(batch)))
	return nil
}

// sortLearns orders each run of learns between forgets by record key. Learns
// of different keys commute (each touches only its own record and index
// entries) and the sort is stable, so the outcome is unchanged; walking the
// B+tree in key order makes a batch of random clients touch pages in order.
// Forgets stay where they are: one may remove records of other keys.
func sortLearns(batch []op) {
	start := 0
	for i := 0; i <= len(batch); i++ {
		if i == len(batch) || batch[i].forget {
			run := batch[start:i]
			if len(run) > 1 {
				slices.SortStableFunc(run, func(a, b op) int { return bytes.Compare(a.key, b.key) })
			}
			start = i + 1
		}
	}
}

func (s *Store) apply(t *txn, o op) error {
	if o.forget {
		_, err := forgetMethod(t, o.method, o.mac, o.identity)
		return err
	}
	r := o.rec
	old, ok, err := t.get(o.key)
	if err != nil {
		s.log.Warn("cache record unreadable, replacing", "mac", r.MAC, "user", r.Identity, "err", err)
	}
	if o.merge {
		return s.applyMerge(t, o, old, ok)
	}
	if !ok && t.recs.Get(o.key) == nil {
		if err := s.admit(t, o.at); err != nil {
			return s.refused(err, r)
		}
	}
	r.FirstSeen = firstSeen(old, ok, r.FirstSeen, o.at)
	if r.FirstSeen.After(o.at) {
		r.FirstSeen = o.at
	}
	r.LastAuthorized = o.at
	r.Expires = o.at.Add(s.opts.TTL)
	return t.replace(o.key, r, old, ok)
}

func firstSeen(old Record, ok bool, given, fallback time.Time) time.Time {
	if ok && !old.FirstSeen.IsZero() && (given.IsZero() || old.FirstSeen.Before(given)) {
		return old.FirstSeen
	}
	if !given.IsZero() {
		return given
	}
	return fallback
}

// forgetMethod removes the MAB record of mac (method MAB) or the EAP-TLS
// records of identity (method EAP-TLS), and nothing of another method. A
// record that does not decode under a matching key is removed too: it cannot
// be served anyway.
func forgetMethod(t *txn, method Method, mac, identity string) (bool, error) {
	removeIf := func(rk []byte) (bool, error) {
		v := t.recs.Get(rk)
		if v == nil {
			return false, nil
		}
		old, err := decodeRecord(v)
		if err == nil && old.Method != method {
			return false, nil
		}
		return true, t.remove(rk, old, err == nil)
	}
	switch method {
	case MethodMAB:
		m, err := parseMAC(mac)
		if err != nil {
			return false, nil
		}
		return removeIf(macKey(m))
	case MethodEAPTLS:
		removed := false
		for _, rk := range allIdentityKeys(t.ident, identity) {
			ok, err := removeIf(rk)
			if err != nil {
				return removed, err
			}
			if t.recs.Get(rk) == nil {
				// Removed now, or a stale index entry: drop the entry.
				if err := t.ident.Delete(identIndexKey(identity, rk)); err != nil {
					return removed, err
				}
			}
			removed = removed || ok
		}
		return removed, nil
	}
	return false, nil
}

// forget removes, whatever their method, the records of mac (its MAB record
// and its EAP-TLS records) and every record indexed under identity: the
// operator's delete.
func forget(t *txn, mac, identity string) (bool, error) {
	removed := false
	if mac != "" {
		if m, err := parseMAC(mac); err == nil {
			ok, err := t.removeKey(macKey(m))
			if err != nil {
				return removed, err
			}
			removed = removed || ok
			for _, rk := range prefixKeys(t.recs, eapTLSPrefix(m)) {
				ok, err := t.removeKey(rk)
				if err != nil {
					return removed, err
				}
				removed = removed || ok
			}
		}
	}
	if identity == "" {
		return removed, nil
	}
	// A MAC-shaped identity (MAB User-Name) is not indexed: it names the
	// MAC record.
	if m, err := parseMAC(identity); err == nil {
		ok, err := t.removeKey(macKey(m))
		if err != nil {
			return removed, err
		}
		removed = removed || ok
	}
	for _, rk := range allIdentityKeys(t.ident, identity) {
		ok, err := t.removeKey(rk)
		if err != nil {
			return removed, err
		}
		if !ok { // stale index entry
			if err := t.ident.Delete(identIndexKey(identity, rk)); err != nil {
				return removed, err
			}
		}
		removed = removed || ok
	}
	// An identity-keyed record whose stored identity differs only in case
	// is indexed under the same folded key, so it was removed above.
	return removed, nil
}

// allIdentityKeys returns every record key indexed under identity (removal
// must not stop at the lookup fan-out cap).
func allIdentityKeys(ident *bolt.Bucket, identity string) [][]byte {
	prefix := identIndexKey(identity, nil)
	var out [][]byte
	c := ident.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, append([]byte(nil), k[len(prefix):]...))
	}
	return out
}

// prefixKeys returns the keys of b that start with prefix.
func prefixKeys(b *bolt.Bucket, prefix []byte) [][]byte {
	var out [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, append([]byte(nil), k...))
	}
	return out
}

// Upsert writes r synchronously (CLI, import). Unset times are filled:
// LastAuthorized = now, Expires = LastAuthorized + TTL, FirstSeen = the
// existing entry's, else LastAuthorized; times in the future are clamped to
// now and Expires to LastAuthorized + TTL. A record already expired returns
// ErrExpired; a new record the full store cannot admit returns ErrFull. Non-replayable attributes are dropped.
func (s *Store) Upsert(r Record) error {
	nr, err := s.prepare(r)
	if err != nil {
		return err
	}
	defer s.memo.reset()
	return s.update(func(t *txn) error {
		rk := recordKey(nr)
		old, ok, _ := t.get(rk)
		if !ok && t.recs.Get(rk) == nil {
			if err := s.admit(t, nr.LastAuthorized); err != nil {
				return err
			}
		}
		nr.FirstSeen = firstSeen(old, ok, nr.FirstSeen, nr.LastAuthorized)
		return t.replace(rk, nr, old, ok)
	})
}

// prepare normalizes r and fills its times for Upsert and Import.
func (s *Store) prepare(r Record) (Record, error) {
	nr, err := normalize(r)
	if err != nil {
		return Record{}, err
	}
	now := s.now()
	if nr.LastAuthorized.IsZero() {
		nr.LastAuthorized = now
	}
	if nr.Expires.IsZero() {
		nr.Expires = nr.LastAuthorized.Add(s.opts.TTL)
	}
	nr = clampTimes(nr, now, s.opts.TTL)
	if !nr.Expires.After(now) {
		return Record{}, fmt.Errorf("%w: expired %s", ErrExpired, nr.Expires.Format(time.RFC3339))
	}
	return nr, nil
}

// Delete removes by key, synchronously: a MAC in any NormalizeMAC notation
// removes that client's record; anything else is taken as an identity and
// removes every record indexed under it. It reports whether anything was
// removed.
func (s *Store) Delete(key string) (bool, error) {
	var removed bool
	defer s.memo.reset()
	err := s.update(func(t *txn) error {
		var err error
		if _, merr := parseMAC(key); merr == nil {
			removed, err = forget(t, key, "")
		} else {
			removed, err = forget(t, "", key)
		}
		return err
	})
	return removed, err
}

// LookupMAB returns the unexpired MAB record of mac (any accepted
// notation): the only record the local decision serves to a MAB request, and
// only once that request proved the MAC (survivability.Classify).
func (s *Store) LookupMAB(mac string) (Record, bool, error) {
	m, err := parseMAC(mac)
	if err != nil {
		return Record{}, false, err
	}
	var r Record
	var ok bool
	now := s.now()
	var key [1 + macLen]byte // macKey on the stack: bbolt keeps no key it is asked for
	err = s.view(func(tx *bolt.Tx) error {
		d, found, err := s.liveAt(tx.Bucket(bucketRecords), appendMACKey(key[:0], m), now)
		r, ok = d, found && d.Method == MethodMAB
		return err
	})
	if err != nil || !ok {
		return Record{}, false, err
	}
	return r, true, nil
}

// LookupEAPTLS returns the unexpired EAP-TLS record of a verified certificate
// identity (case-insensitive): the record of that identity on mac when there
// is one, else the one of that identity authorized last (one user, several
// devices). A record of another identity on the same MAC is never returned.
func (s *Store) LookupEAPTLS(identity, mac string) (Record, bool, error) {
	if identity == "" {
		return Record{}, false, nil
	}
	canon := ""
	if mac != "" {
		if m, err := NormalizeMAC(mac); err == nil {
			canon = m
		}
	}
	now := s.now()
	var best Record
	var found, exact bool
	err := s.view(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		for _, rk := range identityKeys(tx.Bucket(bucketIdent), identity) {
			r, ok, err := s.liveAt(recs, rk, now)
			if err != nil {
				return err
			}
			if !ok || r.Method != MethodEAPTLS || foldIdentity(r.Identity) != foldIdentity(identity) {
				continue
			}
			same := canon != "" && r.MAC == canon
			if !found || same && !exact || same == exact && r.LastAuthorized.After(best.LastAuthorized) {
				best, found, exact = r, true, same
			}
		}
		return nil
	})
	if err != nil || !found {
		return Record{}, false, err
	}
	return best, true, nil
}

// liveAt decodes the record at rk and reports whether it is live at now.
func (s *Store) liveAt(recs *bolt.Bucket, rk []byte, now time.Time) (Record, bool, error) {
	v := recs.Get(rk)
	if v == nil {
		return Record{}, false, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return Record{}, false, fmt.Errorf("cache: record %s: %w", keyString(rk), err)
	}
	return r, s.live(r, now), nil
}

// LookupMAC returns the unexpired record of a MAC (any accepted notation),
// for operators: its MAB record, else its EAP-TLS record authorized last.
// The local decision never uses it (LookupMAB, LookupEAPTLS).
func (s *Store) LookupMAC(mac string) (Record, bool, error) {
	m, err := parseMAC(mac)
	if err != nil {
		return Record{}, false, err
	}
	now := s.now()
	var r Record
	var ok bool
	err = s.view(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		d, live, err := s.liveAt(recs, macKey(m), now)
		if err != nil || live {
			r, ok = d, live
			return err
		}
		prefix := eapTLSPrefix(m)
		c := recs.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			d, live, err := s.liveAt(recs, k, now)
			if err != nil {
				return err
			}
			if live && (!ok || d.LastAuthorized.After(r.LastAuthorized)) {
				r, ok = d, true
			}
		}
		return nil
	})
	if err != nil || !ok {
		return Record{}, false, err
	}
	return r, true, nil
}

// LookupIdentity returns the unexpired record indexed under identity (case-
// insensitive) that was authorized last: one user may have several devices.
func (s *Store) LookupIdentity(identity string) (Record, bool, error) {
	if identity == "" {
		return Record{}, false, nil
	}
	now := s.now()
	var best Record
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		consider := func(rk []byte, viaIndex bool) error {
			v := recs.Get(rk)
			if v == nil {
				return nil // stale index entry, or no such MAC
			}
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("cache: record %s: %w", keyString(rk), err)
			}
			if !s.live(r, now) {
				return nil
			}
			// Through the MAC key, only a record whose own identity is
			// that MAC (a MAB client) matches.
			if !viaIndex && (r.Identity == "" || indexedIdentity(r)) {
				return nil
			}
			if !found || r.LastAuthorized.After(best.LastAuthorized) {
				best, found = r, true
			}
			return nil
		}
		for _, rk := range identityKeys(tx.Bucket(bucketIdent), identity) {
			if err := consider(rk, true); err != nil {
				return err
			}
		}
		// A MAC-shaped identity (MAB User-Name) is not indexed when it is
		// the record's own MAC: look at that record directly.
		if m, err := parseMAC(identity); err == nil {
			return consider(macKey(m), false)
		}
		return nil
	})
	if err != nil || !found {
		return Record{}, false, err
	}
	return best, true, nil
}

// Lookup looks up by MAC first, then by identity. An empty or malformed MAC
// skips the MAC step.
func (s *Store) Lookup(identity, mac string) (Record, bool, error) {
	if mac != "" {
		r, ok, err := s.LookupMAC(mac)
		if err != nil && !errors.Is(err, ErrBadMAC) {
			return Record{}, false, err
		}
		if ok {
			return r, true, nil
		}
	}
	return s.LookupIdentity(identity)
}

// List calls fn for every unexpired record in key order until fn returns
// false. It reads in chunks of short read transactions so a slow consumer
// (export to a pipe) never holds one open; records changed during the walk
// may or may not be seen. A record that does not decode is logged and
// skipped.
func (s *Store) List(fn func(Record) bool) error {
	var after []byte
	for {
		now := s.now()
		var chunk []Record
		var last []byte
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			n := 0
			for ; k != nil && n < listChunk; k, v = c.Next() {
				n++
				last = append(last[:0], k...)
				r, err := decodeRecord(v)
				if err != nil {
					s.log.Warn("cache record unreadable", "id", keyString(k), "err", err)
					continue
				}
				if s.live(r, now) {
					chunk = append(chunk, r)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range chunk {
			if !fn(r) {
				return nil
			}
		}
		if last == nil {
			return nil
		}
		after = append(after[:0], last...)
	}
}

// live reports whether r may be served at now: before its stored expiry and
// within the configured TTL of its last authorization, so that shortening
// the TTL takes effect at once rather than at each client's next learn.
func (s *Store) live(r Record, now time.Time) bool {
	if !r.Expires.After(now) {
		return false
	}
	return r.LastAuthorized.IsZero() || r.LastAuthorized.Add(s.opts.TTL).After(now)
}
