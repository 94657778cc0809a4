package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Buckets. See docs/cache.md for the key scheme.
var (
	bucketRecords = []byte("records") // record key -> encoded Record
	bucketIdent   = []byte("ident")   // folded identity 0x00 record key -> empty
	bucketExpiry  = []byte("expiry")  // 8-octet BE Unix-nano expiry ‖ record key -> empty
	bucketMeta    = []byte("meta")    // schema, entry count

	metaSchema  = []byte("schema")
	metaEntries = []byte("entries")
)

const (
	schemaVersion = 1
	// maxIdentityFanout bounds how many records one identity lookup
	// examines (one user with many devices), keeping lookups bounded.
	maxIdentityFanout = 256
	// listChunk is how many records List reads per read transaction: a
	// long-running export must not hold a read tx that blocks bbolt's remap.
	listChunk = 1000
	// Page fill before a split (bbolt default 0.5); see update.
	recordsFill = 0.9
	expiryFill  = 1.0
	// dropLogEvery rate-limits the queue-full and store-full warnings.
	dropLogEvery = 10 * time.Second
	// maxEvictPerAdmit bounds the work one new record does to make room
	// (after MaxEntries was lowered the store shrinks by this much per new
	// record, and by the sweeper).
	maxEvictPerAdmit = 16
)

// Store is the client cache. Its methods are safe for concurrent use.
type Store struct {
	opts Options
	db   *bolt.DB
	log  *slog.Logger
	now  func() time.Time

	// pending is the batched writer's queue; pmu guards it. commitMu
	// serializes "take the queue and commit it" so batches commit in the
	// order they were queued and Flush waits for an in-flight batch.
	pmu      sync.Mutex
	pending  []op
	closed   bool
	commitMu sync.Mutex
	dbClosed bool // guarded by commitMu
	kick     chan struct{}

	running atomic.Bool
	memo    *relearnMemo

	coalesced atomic.Uint64

	drops       atomic.Uint64
	mergeWon    atomic.Uint64 // MergeQueued records written
	mergeLost   atomic.Uint64 // MergeQueued records the stored entry won over
	lastDropLog atomic.Int64
	committed   atomic.Uint64
	commits     atomic.Uint64
	writeErrs   atomic.Uint64
	swept       atomic.Uint64
	evicted     atomic.Uint64
	refusedN    atomic.Uint64
	lastFullLog atomic.Int64
	lastSweep   atomic.Int64 // Unix nanos
	lastSwept   atomic.Int64
}

// Stats is a snapshot for `mxedge cache stats` and metrics.
type Stats struct {
	Entries        int       // records stored, expired or not
	ExpiredPending int       // records past expiry the sweeper has not removed yet
	DBSize         int64     // bytes of the database file in use
	QueueDepth     int       // operations waiting for the batched writer
	Drops          uint64    // Learn/Forget operations dropped: queue full, store closed or read-only
	Coalesced      uint64    // learns not written again: identical to one queued within Relearn
	Committed      uint64    // queued operations made durable
	Commits        uint64    // writer transactions committed
	WriteErrors    uint64    // writer transactions that failed (their operations are lost)
	Swept          uint64    // expired records removed since Open
	Evicted        uint64    // records evicted to admit a new one at MaxEntries
	Refused        uint64    // learns of new records refused at MaxEntries (every candidate protected)
	MergeWon       uint64    // records from cluster peers written (MergeQueued)
	MergeLost      uint64    // records from cluster peers the stored entry won over (MergeQueued)
	LastSweep      time.Time // end of the last sweep; zero before the first
	LastSweepCount int       // records removed by the last sweep
}

// Open opens (creating if needed, unless ReadOnly) the database at o.Path.
// A file locked by another process gives ErrLocked after o.OpenTimeout.
func Open(o Options) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if !o.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
			return nil, fmt.Errorf("cache: open %s: %w", o.Path, err)
		}
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{
		Timeout:  o.OpenTimeout,
		ReadOnly: o.ReadOnly,
		NoSync:   o.NoSync,
		// The hashmap freelist stays fast after the sweeper frees many
		// pages; the freelist is still synced so a cold open does not
		// scan the whole file.
		FreelistType: bolt.FreelistMapType,
		// Nothing reads bbolt's DB.Stats (Store.Stats counts for itself), and keeping them costs
		// every read transaction a mutex twice and a dozen atomic additions: one per local MAB
		// answer (LookupMAB).
		NoStatistics: true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, o.Path, o.OpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", o.Path, err)
	}
	s := &Store{opts: o, db: db, log: o.Logger, now: o.Now, kick: make(chan struct{}, 1), memo: newRelearnMemo(o.Relearn)}
	if err := s.initSchema(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) initSchema() error {
	check := func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil
		}
		if v := m.Get(metaSchema); len(v) == 8 && binary.BigEndian.Uint64(v) != schemaVersion {
			return fmt.Errorf("%w: schema %d, this binary knows %d", ErrUnknownVersion,
				binary.BigEndian.Uint64(v), schemaVersion)
		}
		return nil
	}
	if s.opts.ReadOnly {
		return s.db.View(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketRecords, bucketIdent, bucketExpiry, bucketMeta} {
				if tx.Bucket(b) == nil {
					return fmt.Errorf("cache: open %s: %w: missing bucket %s", s.opts.Path, ErrBadRecord, b)
				}
			}
			return check(tx)
		})
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := check(tx); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketRecords, bucketIdent, bucketExpiry, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("cache: create bucket %s: %w", b, err)
			}
		}
		m := tx.Bucket(bucketMeta)
		if m.Get(metaSchema) == nil {
			return m.Put(metaSchema, binary.BigEndian.AppendUint64(nil, schemaVersion))
		}
		return nil
	})
}

// Close flushes the pending batch (unless read-only) and closes the file.
// Cancel Run and wait for it before Close; operations queued after Close
// are dropped. Close is idempotent.
func (s *Store) Close() error {
	s.pmu.Lock()
	if s.closed {
		s.pmu.Unlock()
		return nil
	}
	s.closed = true // from here Learn and Forget drop
	s.pmu.Unlock()
	var ferr error
	if !s.opts.ReadOnly {
		ferr = s.Flush()
	}
	s.commitMu.Lock() // no commit in flight past this point
	defer s.commitMu.Unlock()
	s.dbClosed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("cache: close: %w", err)
	}
	return ferr
}

// Run runs the batched writer and the expiry sweeper until ctx is done, then
// commits the pending batch and returns nil (or the final commit's error).
// On a read-only store it only waits for ctx.
func (s *Store) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("cache: run called twice")
	}
	defer s.running.Store(false)
	if s.opts.ReadOnly {
		<-ctx.Done()
		return nil
	}
	s.log.Info("cache started")
	var wg sync.WaitGroup
	wg.Go(func() { s.writer(ctx) })
	wg.Go(func() { s.sweeper(ctx) })
	wg.Wait()
	err := s.Flush()
	s.log.Info("cache stopped")
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// writer commits the queue when it reaches BatchSize or BatchDelay after
// the first queued operation.
func (s *Store) writer(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if s.queueLen() == 0 {
			continue
		}
		timer.Reset(s.opts.BatchDelay)
	collect:
		for s.queueLen() < s.opts.BatchSize {
			select {
			case <-s.kick:
			case <-timer.C:
				break collect
			case <-ctx.Done():
				timer.Stop()
				return // Run flushes
			}
		}
		timer.Stop()
		if err := s.Flush(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("cache write failed", "err", err)
		}
	}
}

func (s *Store) queueLen() int {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return len(s.pending)
}

// sweeper removes expired entries at start and every SweepInterval.
func (s *Store) sweeper(ctx context.Context) {
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := s.sweep(ctx)
		if err != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
			s.log.Error("cache sweep failed", "err", err)
		} else if n > 0 {
			s.log.Debug("cache swept", "dur", time.Since(start)) // the count is in Stats
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep removes every record expired at the time of the call, SweepBatch
// per transaction, and stops early when ctx is done.
func (s *Store) sweep(ctx context.Context) (int, error) {
	now := s.now()
	total := 0
	defer func() {
		s.swept.Add(uint64(total))
		s.lastSweep.Store(s.now().UnixNano())
		s.lastSwept.Store(int64(total))
	}()
	for ctx.Err() == nil {
		n, err := s.sweepOnce(now, s.opts.SweepBatch)
		total += n
		if err != nil {
			return total, err
		}
		if n < s.opts.SweepBatch {
			return total, nil
		}
	}
	return total, nil
}

// PurgeExpired removes every expired record now (`mxedge cache purge
// --expired`) and returns how many it removed.
func (s *Store) PurgeExpired() (int, error) {
	if s.opts.ReadOnly {
		return 0, ErrReadOnly
	}
	return s.sweep(context.Background())
}

// sweepOnce deletes up to limit records whose expiry is at or before now,
// walking only the expired prefix of the expiry index. It returns the number
// of index entries it consumed.
func (s *Store) sweepOnce(now time.Time, limit int) (int, error) {
	n := 0
	err := s.update(func(t *txn) error {
		bound := expiryPrefix(now)
		var keys [][]byte
		c := t.exp.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < limit; k, _ = c.Next() {
			if len(k) < 8 || bytes.Compare(k[:8], bound) > 0 {
				break
			}
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			rk := k[8:]
			if v := t.recs.Get(rk); v != nil {
				old, err := decodeRecord(v)
				// Delete the record only if this index entry is its
				// current expiry; an undecodable record is removed too.
				if err != nil || bytes.Equal(expiryPrefix(old.Expires), k[:8]) {
					if err := t.remove(rk, old, err == nil); err != nil {
						return err
					}
				}
			}
			if err := t.exp.Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Stats returns a snapshot. Database figures are zero if it cannot be read.
func (s *Store) Stats() Stats {
	st := Stats{
		QueueDepth:     s.queueLen(),
		Drops:          s.drops.Load(),
		Coalesced:      s.coalesced.Load(),
		Committed:      s.committed.Load(),
		Commits:        s.commits.Load(),
		WriteErrors:    s.writeErrs.Load(),
		Swept:          s.swept.Load(),
		Evicted:        s.evicted.Load(),
		Refused:        s.refusedN.Load(),
		MergeWon:       s.mergeWon.Load(),
		MergeLost:      s.mergeLost.Load(),
		LastSweepCount: int(s.lastSwept.Load()),
	}
	if ns := s.lastSweep.Load(); ns != 0 {
		st.LastSweep = time.Unix(0, ns).UTC()
	}
	bound := expiryPrefix(s.now())
	err := s.db.View(func(tx *bolt.Tx) error {
		st.DBSize = tx.Size()
		if v := tx.Bucket(bucketMeta).Get(metaEntries); len(v) == 8 {
			st.Entries = int(binary.BigEndian.Uint64(v))
		}
		c := tx.Bucket(bucketExpiry).Cursor()
		for k, _ := c.First(); len(k) >= 8 && bytes.Compare(k[:8], bound) <= 0; k, _ = c.Next() {
			st.ExpiredPending++
		}
		return nil
	})
	if err != nil {
		s.log.Warn("cache stats failed", "err", err)
	}
	return st
}

// expiryPrefix is the 8-octet big-endian expiry key prefix. Times before
// 1970 sort first (clamped to 0) so they are swept at once.
func expiryPrefix(t time.Time) []byte {
	n := timeToNanos(t)
	if n < 0 {
		n = 0
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n))
}

// txn bundles the buckets of one write transaction and the entry-count
// delta it accumulates.
type txn struct {
	tx                    *bolt.Tx
	recs, ident, exp, met *bolt.Bucket
	delta                 int64
}

// update runs fn in one write transaction and keeps the entry count.
func (s *Store) update(fn func(*txn) error) error {
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		t := &txn{tx: tx, recs: tx.Bucket(bucketRecords), ident: tx.Bucket(bucketIdent),
			exp: tx.Bucket(bucketExpiry), met: tx.Bucket(bucketMeta)}
		// Fill pages further than bbolt's default 50% before splitting:
		// records and identities arrive in random key order, which leaves
		// pages part-empty anyway, and the expiry index is appended at
		// now+TTL. Denser pages mean a smaller file and fewer resident
		// pages for the daemon (docs/cache.md, benchmarks).
		t.recs.FillPercent = recordsFill
		t.ident.FillPercent = recordsFill
		t.exp.FillPercent = expiryFill
		if err := fn(t); err != nil {
			return err
		}
		if t.delta != 0 {
			var n int64
			if v := t.met.Get(metaEntries); len(v) == 8 {
				n = int64(binary.BigEndian.Uint64(v))
			}
			n = max(n+t.delta, 0)
			return t.met.Put(metaEntries, binary.BigEndian.AppendUint64(nil, uint64(n)))
		}
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// indexedIdentity reports whether r gets an identity index entry. A MAB
// client's User-Name is usually its own MAC (in any notation): indexing it
// would duplicate the record key, so LookupIdentity and Forget resolve a
// MAC-shaped identity through the record key instead.
func indexedIdentity(r Record) bool {
	if r.Identity == "" {
		return false
	}
	if r.MAC != "" {
		if m, err := NormalizeMAC(r.Identity); err == nil && m == r.MAC {
			return false
		}
	}
	return true
}

func identIndexKey(identity string, rk []byte) []byte {
	f := foldIdentity(identity)
	k := make([]byte, 0, len(f)+1+len(rk))
	k = append(k, f...)
	k = append(k, 0)
	return append(k, rk...)
}

func expiryIndexKey(t time.Time, rk []byte) []byte {
	return append(expiryPrefix(t), rk...)
}

// get returns the decoded record at rk, if any. A record that does not
// decode is reported as an error.
func (t *txn) get(rk []byte) (Record, bool, error) {
	v := t.recs.Get(rk)
	if v == nil {
		return Record{}, false, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return Record{}, false, fmt.Errorf("record %s: %w", keyString(rk), err)
	}
	return r, true, nil
}

// replace writes a normalized record with its times set, replacing the index entries of the
// previous version, which the caller already read (old,
// ok) of the record at rk.
func (t *txn) replace(rk []byte, r Record, old Record, ok bool) error {
	newIdent, newExp := []byte(nil), expiryIndexKey(r.Expires, rk)
	if indexedIdentity(r) {
		newIdent = identIndexKey(r.Identity, rk)
	}
	var oldIdent, oldExp []byte
	if ok {
		oldExp = expiryIndexKey(old.Expires, rk)
		if indexedIdentity(old) {
			oldIdent = identIndexKey(old.Identity, rk)
		}
	} else if t.recs.Get(rk) == nil {
		t.delta++
	}
	v, err := encodeRecord(r)
	if err != nil {
		return err
	}
	if err := t.recs.Put(rk, v); err != nil {
		return err
	}
	if err := replaceKey(t.ident, oldIdent, newIdent); err != nil {
		return err
	}
	return replaceKey(t.exp, oldExp, newExp)
}

// replaceKey swaps index key old for new (either may be nil), touching the
// bucket only when they differ.
func replaceKey(b *bolt.Bucket, old, new []byte) error {
	if bytes.Equal(old, new) {
		return nil
	}
	if old != nil {
		if err := b.Delete(old); err != nil {
			return err
		}
	}
	if new != nil {
		return b.Put(new, nil)
	}
	return nil
}

func (t *txn) unindex(rk []byte, old Record) error {
	if indexedIdentity(old) {
		if err := t.ident.Delete(identIndexKey(old.Identity, rk)); err != nil {
			return err
		}
	}
	return t.exp.Delete(expiryIndexKey(old.Expires, rk))
}

// remove deletes the record at rk; old is its decoded value when decoded.
func (t *txn) remove(rk []byte, old Record, decoded bool) error {
	if decoded {
		if err := t.unindex(rk, old); err != nil {
			return err
		}
	}
	if err := t.recs.Delete(rk); err != nil {
		return err
	}
	t.delta--
	return nil
}

// removeKey deletes the record at rk if present.
func (t *txn) removeKey(rk []byte) (bool, error) {
	if t.recs.Get(rk) == nil {
		return false, nil
	}
	old, _, err := t.get(rk)
	return true, t.remove(rk, old, err == nil)
}

// identityKeys returns the record keys indexed under identity (at most
// maxIdentityFanout).
func identityKeys(ident *bolt.Bucket, identity string) [][]byte {
	prefix := identIndexKey(identity, nil)
	var out [][]byte
	c := ident.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < maxIdentityFanout; k, _ = c.Next() {
		out = append(out, append([]byte(nil), k[len(prefix):]...))
	}
	return out
}

// entries is the record count as of this point of the transaction.
func (t *txn) entries() int64 {
	var n int64
	if v := t.met.Get(metaEntries); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return n + t.delta
}

// admit makes room for one record not yet stored, confirmed at confirmed.
// Below MaxEntries it does nothing. At the cap it evicts the record first in
// the expiry index, which for learned records (Expires = LastAuthorized +
// TTL, imports clamped to it) is the one confirmed longest ago, provided it
// is dead already, or was confirmed more than Protect ago and before the
// new record. Otherwise it returns ErrFull: a recently confirmed entry is
// never given up for one the store has not seen (docs/cache.md, "Entry
// cap").
func (s *Store) admit(t *txn, confirmed time.Time) error {
	now := s.now()
	guard := now.Add(-s.opts.Protect)
	for range maxEvictPerAdmit {
		if t.entries() < int64(s.opts.MaxEntries) {
			return nil
		}
		k, _ := t.exp.Cursor().First()
		if k == nil {
			return ErrFull // entries counted but not indexed: nothing to evict
		}
		key := append([]byte(nil), k...)
		rk := key[min(8, len(key)):]
		old, found, err := t.get(rk)
		switch {
		case len(key) < 8 || (!found && err == nil) || (found && !bytes.Equal(expiryPrefix(old.Expires), key[:8])):
			// A stale index entry (its record is gone or has a newer expiry).
			if err := t.exp.Delete(key); err != nil {
				return err
			}
			continue
		case err != nil:
			// An undecodable record cannot be served: evict it.
		case s.live(old, now) && (old.LastAuthorized.After(guard) || !old.LastAuthorized.Before(confirmed)):
			return ErrFull
		}
		if err := t.remove(rk, old, err == nil); err != nil {
			return err
		}
		if err != nil {
			if err := t.exp.Delete(key); err != nil {
				return err
			}
		}
		s.evicted.Add(1)
		s.memo.reset() // the evicted record may be memoized as queued
		s.log.Debug("cache entry evicted", "id", keyString(rk))
	}
	if t.entries() < int64(s.opts.MaxEntries) {
		return nil
	}
	return ErrFull
}

// refused counts a learn the full store could not admit and warns at most
// every dropLogEvery. A learn refused is not an error of the batch.
func (s *Store) refused(err error, r Record) error {
	if !errors.Is(err, ErrFull) {
		return err
	}
	s.refusedN.Add(1)
	s.memo.reset() // the refused record may be memoized as queued
	now := s.now().UnixNano()
	last := s.lastFullLog.Load()
	if now-last >= int64(dropLogEvery) && s.lastFullLog.CompareAndSwap(last, now) {
		s.log.Warn("cache full, refusing new entries", "reason", "every entry confirmed recently",
			"mac", r.MAC)
	}
	return nil
}
