package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Buckets. Index keys are built from length-prefixed components (keyBuilder), so no value a NAS
// sends (a NUL in an Acct-Session-Id, say) can make two keys collide; each ends in the 8-octet ID.
var (
	bucketRecords = []byte("records") // ID -> encoded Record
	bucketMeta    = []byte("meta")    // schema, next ID
	bucketASID    = []byte("asid")    // Acct-Session-Id, NAS
	bucketUser    = []byte("user")    // folded User-Name
	bucketIP      = []byte("ip")      // Framed-IP-Address, Framed-IPv6-Address, Framed-IPv6-Prefix address
	bucketNAS     = []byte("nas")     // NAS
	bucketPort    = []byte("port")    // NAS, "p"+NAS-Port or "i"+NAS-Port-Id
	bucketEnded   = []byte("ended")   // 8-octet expiry of a stopped session
	bucketLive    = []byte("live")    // 8-octet missed-interim deadline of a live session
	bucketRecon   = []byte("recon")   // 8-octet Authorized of a session needing reconciliation
	bucketOrigin  = []byte("origin")  // Origin, 8-octet OriginID: a replicated record's name in the cluster

	// bucketLegacyMAC held the MAC index (6 octets, ID) in schema 1 files; it is now in memory
	// (macIndex) and the bucket is dropped when such a file is opened for writing.
	bucketLegacyMAC = []byte("mac")

	allBuckets = [][]byte{bucketRecords, bucketMeta, bucketASID, bucketUser, bucketIP, bucketNAS,
		bucketPort, bucketEnded, bucketLive, bucketRecon, bucketOrigin}
	indexBuckets = allBuckets[2:]
	// optionalBuckets were added after schema 1's first release: a file opened read-only may
	// lack them (they are created on the next writable open).
	optionalBuckets = [][]byte{bucketOrigin}

	metaSchema = []byte("schema")
	metaNextID = []byte("next-id")
	// metaUserIndex is set once a file's User-Name index holds no entry for a record whose
	// User-Name names its own MAC (dropMABUserEntries).
	metaUserIndex = []byte("user-index-mab")
)

const (
	// schemaVersion 2: the MAC index left the file (macIndex). A schema 1 file is read as it is
	// and migrated when opened for writing; a binary that knows only schema 1 refuses a schema 2
	// file rather than trust an index it would find empty.
	schemaVersion = 2
	// maxFanout bounds how many records one index prefix yields when matching an update (one MAC
	// seen many times at one NAS within the grace period), keeping Apply bounded.
	maxFanout = 64
	// sweepBatch bounds the deletions of one sweep transaction.
	sweepBatch = 1000
	// maxEvictPerAdmit bounds the work one new session does to make room (after MaxEntries was
	// lowered the table shrinks by this much per new session, and by the sweeper).
	maxEvictPerAdmit = 16
	// Page fill before a split (see update).
	appendFill = 0.95
	randomFill = 0.9
	// terminateNASReboot is Acct-Terminate-Cause NAS-Reboot (RFC 2866 §5.10), given to the
	// sessions of a NAS that sent Accounting-On/Off.
	terminateNASReboot = 11
)

// Store is the session table. Its methods are safe for concurrent use; Apply should have one
// caller (the tracker's writer) so changes reach the Observer in packet order.
type Store struct {
	opts Options
	db   *bolt.DB
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex // guards active and closed
	active map[nasSite]int
	closed bool
	// wmu serializes every write transaction with its bookkeeping and its Observer calls, so the
	// observer sees changes in commit order and the next transaction sees this one's entry count.
	wmu sync.Mutex

	running   atomic.Bool
	live      atomic.Int64
	recon     atomic.Int64
	entries   atomic.Int64
	created   atomic.Uint64
	starts    atomic.Uint64
	stops     atomic.Uint64
	expired   atomic.Uint64
	evicted   atomic.Uint64
	commits   atomic.Uint64
	applied   atomic.Uint64
	refused   atomic.Uint64
	writeErrs atomic.Uint64
	// Replicas from peers (MergeReplica, KindReplica): written, lost to what was stored (the merge
	// rule kept the stored record), refused (expired or invalid).
	mergeWon, mergeLost, mergeRefused atomic.Uint64
	reauths                           atomic.Uint64

	// marks remembers, per NAS and MAC, the last Access-Accept applied to a live session without an
	// address, so that the same Accept again is absorbed without reading the table (reauthMark).
	// Keyed by markKey; without pointers, so the collector never scans it. Guarded by wmu; changed
	// only after a commit.
	marks map[uint64]reauthMark
	seed  maphash.Seed
	// macs is the MAC index (macIndex), built by recount.
	macs *macIndex
}

// reauthMark is what an Access-Accept left behind: the digest of its fields, the session's
// Updated then and the window within which the same Accept again changes nothing worth writing
// (reauthUnchanged). Any write or removal of a session with that NAS and MAC forgets the mark.
type reauthMark struct {
	sum     uint64
	updated int64 // Unix nanoseconds
	window  time.Duration
	mac     [6]byte
}

// maxReauthMarks bounds the marks; when full they are forgotten, which costs one table read each.
const maxReauthMarks = 1 << 16

type nasSite struct{ nas, site string }

// Stats is a snapshot for `mxedge status`, the control socket and metrics.
type Stats struct {
	Entries        int        // sessions stored, ended ones in their grace period included
	Live           int        // authorized or active
	NeedReconcile  int        // admitted locally, not yet re-authorized by the cloud
	Active         []NASCount // live sessions per NAS and site, sorted
	Created        uint64     // sessions created since Open
	Starts         uint64     // Accounting Starts applied since Open
	Stops          uint64     // sessions ended (Stop, NAS reboot) since Open
	Expired        uint64     // sessions removed by the sweeper since Open
	Evicted        uint64     // sessions evicted at MaxEntries since Open
	Applied        uint64     // updates committed
	Refused        uint64     // updates refused (no NAS, a field too long), the rest of their batch committed
	Commits        uint64     // write transactions committed
	WriteErrors    uint64     // write transactions that failed (their updates are lost)
	MergeWon       uint64     // records from peers written (new here, or winning the merge rule)
	MergeLost      uint64     // records from peers not written: what this edge held won
	MergeRefused   uint64     // records from peers not written: expired or invalid
	Reauths        uint64     // re-authentications not rewritten: the session unchanged but for its times (reauthUnchanged)
	DBSize         int64      // bytes of the file in use
	MaxEntries     int
	StopGrace      time.Duration
	MissedInterims int
}

// NASCount is the live sessions of one NAS at one site.
type NASCount struct {
	NAS, Site string
	Live      int
}

// Open opens (creating if needed, unless ReadOnly) the table at o.Path and counts what it holds.
// A file locked by another process gives ErrLocked after o.OpenTimeout.
func Open(o Options) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if !o.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
			return nil, fmt.Errorf("session: open %s: %w", o.Path, err)
		}
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{Timeout: o.OpenTimeout, ReadOnly: o.ReadOnly, NoSync: o.NoSync,
		FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, o.Path, o.OpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("session: open %s: %w", o.Path, err)
	}
	s := &Store{opts: o, db: db, log: o.Logger, now: o.Now, active: map[nasSite]int{}, marks: map[uint64]reauthMark{},
		seed: maphash.MakeSeed(), macs: newMACIndex()}
	if err := s.initSchema(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.recount(); err != nil {
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
		if v := m.Get(metaSchema); len(v) == 8 && (binary.BigEndian.Uint64(v) == 0 || binary.BigEndian.Uint64(v) > schemaVersion) {
			return fmt.Errorf("%w: schema %d, this binary knows %d", ErrUnknownVersion, binary.BigEndian.Uint64(v), schemaVersion)
		}
		return nil
	}
	if s.opts.ReadOnly {
		return s.db.View(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if tx.Bucket(b) == nil && !slices.ContainsFunc(optionalBuckets, func(o []byte) bool { return bytes.Equal(o, b) }) {
					return fmt.Errorf("session: open %s: %w: missing bucket %s", s.opts.Path, ErrBadRecord, b)
				}
			}
			return check(tx)
		})
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := check(tx); err != nil {
			return err
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("session: create bucket %s: %w", b, err)
			}
		}
		if tx.Bucket(bucketLegacyMAC) != nil {
			if err := tx.DeleteBucket(bucketLegacyMAC); err != nil {
				return fmt.Errorf("session: drop the schema 1 MAC index: %w", err)
			}
		}
		m := tx.Bucket(bucketMeta)
		if v := m.Get(metaSchema); len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
			if err := m.Put(metaSchema, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
				return err
			}
		}
		return dropMABUserEntries(tx)
	})
}

// dropMABUserEntries removes, once per file, the User-Name index entries that files written
// before userIsMAC held for records whose User-Name names their own MAC: indexKeys no longer
// lists them, so nothing would delete them when their records go.
func dropMABUserEntries(tx *bolt.Tx) error {
	m := tx.Bucket(bucketMeta)
	if m.Get(metaUserIndex) != nil {
		return nil
	}
	users := tx.Bucket(bucketUser)
	err := tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
		r, err := decodeRecord(v)
		if err != nil || r.UserName == "" || !userIsMAC(&r) {
			return nil
		}
		return users.Delete(new(keyBuilder).str(foldUser(r.UserName)).id(r.ID))
	})
	if err != nil {
		return fmt.Errorf("session: user index: %w", err)
	}
	return m.Put(metaUserIndex, []byte{1})
}

// recount rebuilds the in-memory counts and the MAC index from the file (Open). A record that
// does not decode is counted as an entry only, and logged: it is removed when its index entries
// come due.
func (s *Store) recount() error {
	bad := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			s.entries.Add(1)
			r, err := decodeRecord(v)
			if err != nil {
				bad++
				return nil
			}
			s.count(nil, &r)
			if m, ok := parseMAC(r.MAC); ok {
				s.macs.add(m, r.ID)
			}
			return nil
		})
	})
	if bad > 0 {
		s.log.Warn("session records unreadable", "reason", "decode", "count", bad)
	}
	if err != nil {
		return fmt.Errorf("session: open %s: %w", s.opts.Path, err)
	}
	return nil
}

// count moves the in-memory counts from prev to cur (either may be nil).
func (s *Store) count(prev, cur *Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev != nil && prev.State.Live() {
		k := nasSite{prev.NAS, prev.Site}
		if s.active[k]--; s.active[k] <= 0 {
			delete(s.active, k)
		}
		s.live.Add(-1)
	}
	if cur != nil && cur.State.Live() {
		s.active[nasSite{cur.NAS, cur.Site}]++
		s.live.Add(1)
	}
	if prev != nil && prev.Reconcile == ReconcileNeeded {
		s.recon.Add(-1)
	}
	if cur != nil && cur.Reconcile == ReconcileNeeded {
		s.recon.Add(1)
	}
}

// Close closes the file. Stop Run and the writer first; Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("session: close: %w", err)
	}
	return nil
}

// Run removes expired sessions at start and every SweepInterval until ctx is done, then returns
// nil. On a read-only store it only waits.
func (s *Store) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("session: run called twice")
	}
	defer s.running.Store(false)
	if s.opts.ReadOnly {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("session sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// change is one committed change waiting for the observer and the counts.
type change struct {
	c         Change
	prev, cur *Record
	// merged: a peer's record (KindReplica), told neither to the Observer (the edge that saw the
	// packet tells its own) nor to Share (it came from the cluster).
	merged bool
}

// txn bundles one write transaction's buckets and the changes it made.
type txn struct {
	s       *Store
	tx      *bolt.Tx
	recs    *bolt.Bucket
	idx     map[string]*bolt.Bucket
	changes []change
	entries int64  // delta
	starts  uint64 // Accounting Starts applied
	reauths uint64 // Accepts absorbed by reauthUnchanged
	// scratch buffers for reauthUnchanged's encodings
	enc, encOld []byte
	// The marks this transaction set and forgot, applied to Store.marks when it commits.
	marks     map[uint64]reauthMark
	forgot    map[uint64]bool
	forgotAll bool
	dirty     bool // something was written: the transaction must commit
	// next is the next record ID (0: not read yet), nextDirty whether it moved (nextID).
	next      uint64
	nextDirty bool
	// macOps are the MAC index changes made so far (recordMACs), undone if it does not commit.
	macOps []macOp
}

// errUnchanged rolls back a write transaction that wrote nothing: bbolt would still write a
// freelist page and the meta page and sync the file twice to commit it.
var errUnchanged = errors.New("session: nothing to commit")

// update runs fn in one write transaction, then counts its changes and tells the observer.
func (s *Store) update(fn func(*txn) error) error {
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var t *txn
	err := s.db.Update(func(tx *bolt.Tx) error {
		t = &txn{s: s, tx: tx, recs: tx.Bucket(bucketRecords), idx: make(map[string]*bolt.Bucket, len(indexBuckets))}
		// Pages fill further than bbolt's default 50% before they split: records are keyed by an
		// increasing ID and the due indexes by time, so they are mostly appended to; the other
		// indexes get keys in random order, as the cache's do (cache/store.go). Denser pages are a
		// smaller file and fewer pages written per commit (bench/sessions).
		t.recs.FillPercent = appendFill
		for _, b := range indexBuckets {
			bk := tx.Bucket(b)
			if bk == nil {
				return fmt.Errorf("session: missing bucket %s", b)
			}
			bk.FillPercent = randomFill
			t.idx[string(b)] = bk
		}
		for _, b := range [][]byte{bucketEnded, bucketLive, bucketRecon, bucketNAS} {
			t.idx[string(b)].FillPercent = appendFill
		}
		if err := fn(t); err != nil {
			return err
		}
		if !t.dirty {
			return errUnchanged
		}
		return t.saveNextID()
	})
	if err != nil && t != nil {
		t.undoMACs()
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	switch {
	case errors.Is(err, errUnchanged): // every update absorbed (reauthUnchanged): nothing to sync
	case err != nil:
		s.writeErrs.Add(1)
		return err
	default:
		s.commits.Add(1)
	}
	s.entries.Add(t.entries)
	s.starts.Add(t.starts)
	s.reauths.Add(t.reauths)
	t.commitMarks()
	for _, c := range t.changes {
		s.count(c.prev, c.cur)
		switch c.c {
		case ChangeCreated:
			s.created.Add(1)
		case ChangeExpired:
			s.expired.Add(1)
		case ChangeEvicted:
			s.evicted.Add(1)
		}
		if c.c == ChangeEnded {
			s.stops.Add(1)
		}
	}
	if o := s.opts.Observer; o != nil {
		for _, c := range t.changes {
			if !c.merged {
				o.SessionChanged(c.c, c.prev, c.cur)
			}
		}
	}
	if share := s.opts.Share; share != nil {
		// A record written twice in one transaction (an Accept and its Start in one batch) is
		// shared once, as committed: peers need its last state only.
		last := make(map[uint64]int, len(t.changes))
		for i, c := range t.changes {
			if c.cur != nil {
				last[c.cur.ID] = i
			}
		}
		for i, c := range t.changes {
			if !c.merged && c.cur != nil && last[c.cur.ID] == i && (c.c == ChangeCreated || c.c == ChangeUpdated || c.c == ChangeEnded) {
				r := *c.cur
				r.Class = slices.Clone(r.Class)
				share(r)
			}
		}
	}
	return nil
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Apply commits a batch of updates in one transaction, in order, and then tells the Observer of
// every change. An update that cannot be stored (a field too long) is skipped and counted in the
// error it returns beside the others' commit; a failed transaction loses the whole batch.
func (s *Store) Apply(us []Update) error {
	var bad []error
	err := s.update(func(t *txn) error {
		for i := range us {
			if err := t.apply(&us[i]); err != nil {
				if errors.Is(err, ErrBadRecord) {
					bad = append(bad, err)
					continue
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("session: apply %d updates: %w", len(us), err)
	}
	s.applied.Add(uint64(len(us) - len(bad)))
	s.refused.Add(uint64(len(bad)))
	if len(bad) > 0 {
		return fmt.Errorf("session: %d of %d updates not stored: %w", len(bad), len(us), errors.Join(bad...))
	}
	return nil
}

// apply applies one update inside t.
func (t *txn) apply(u *Update) error {
	if u.Rec.NAS == "" {
		return fmt.Errorf("%w: update without a nas", ErrBadRecord)
	}
	at := u.At.UTC()
	if u.At.IsZero() {
		at = t.s.now().UTC()
	}
	if u.Kind == KindNASReboot {
		return t.nasReboot(u.Rec.NAS, at)
	}
	if u.Kind == KindReplica {
		return t.mergeReplica(&u.Rec)
	}
	if u.Kind < KindAccept || u.Kind > KindStop {
		return fmt.Errorf("%w: update kind %d", ErrBadRecord, u.Kind)
	}
	var markKey, sum uint64
	var mac [6]byte
	marked := false
	if u.Kind == KindAccept && u.Rec.AcctSessionID == "" && !hasAddress(&u.Rec) {
		if markKey, mac, marked = t.s.markKey(u.Rec.NAS, u.Rec.MAC); marked {
			sum = t.s.digest(&u.Rec)
			if m, ok := t.mark(markKey); ok && m.sum == sum && m.mac == mac {
				if d := time.Duration(timeToNanos(at) - m.updated); d >= 0 && d < m.window {
					t.reauths++ // the same Accept as the last one, on a session unchanged since
					return nil
				}
			}
		}
	}
	old, found, err := t.match(u)
	if err != nil {
		return err
	}
	if u.Kind == KindStart {
		t.starts++
	}
	// A new session: nothing matched, or the match has ended and this packet begins again (an
	// Accept or a Start after a Stop; a late Interim or a retransmitted Stop updates the ended one).
	fresh := !found || (!old.State.Live() && (u.Kind == KindAccept || u.Kind == KindStart))
	var r Record
	if fresh {
		id, err := t.nextID()
		if err != nil {
			return err
		}
		r = Record{ID: id, State: StateAuthorized}
	} else {
		r = old
		r.Class = append([]byte(nil), old.Class...)
	}
	merge(&r, u, at)
	t.s.expiry(&r)
	t.s.stampLocal(&r, &old, found && !fresh)
	if u.Kind == KindAccept && t.s.opts.Node != "" {
		r.AdmittedBy = t.s.opts.Node
	}
	if err := r.validate(); err != nil {
		return err
	}
	if !fresh && u.Kind == KindAccept && t.reauthUnchanged(&r, &old, at) {
		t.reauths++
		if marked {
			t.setMark(markKey, reauthMark{sum: sum, updated: timeToNanos(old.Updated), window: t.reauthWindow(&old), mac: mac})
		}
		return nil
	}
	if marked {
		// After the write below (which forgets the key): the same Accept again changes nothing.
		defer func() {
			if r.State.Live() && !hasAddress(&r) {
				t.setMark(markKey, reauthMark{sum: sum, updated: timeToNanos(r.Updated), window: t.reauthWindow(&r), mac: mac})
			}
		}()
	}
	if fresh {
		if err := t.admit(); err != nil {
			return err
		}
		if err := t.put(&r, nil); err != nil {
			return err
		}
		t.entries++
		t.changes = append(t.changes, change{c: ChangeCreated, cur: &r})
		return nil
	}
	if err := t.put(&r, &old); err != nil {
		return err
	}
	c := ChangeUpdated
	if old.State.Live() && !r.State.Live() {
		c = ChangeEnded
	}
	t.changes = append(t.changes, change{c: c, prev: &old, cur: &r})
	return nil
}

// merge applies u to r at time at: the packet's fields replace the record's where the packet
// carried them.
func merge(r *Record, u *Update, at time.Time) {
	p := &u.Rec
	r.NAS = p.NAS
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&r.NASAddr, p.NASAddr)
	set(&r.Vendor, p.Vendor)
	set(&r.Site, p.Site)
	set(&r.NASPortID, p.NASPortID)
	set(&r.CalledStationID, p.CalledStationID)
	set(&r.SSID, p.SSID)
	set(&r.CallingStationID, p.CallingStationID)
	set(&r.MAC, p.MAC)
	set(&r.UserName, p.UserName)
	set(&r.AcctSessionID, p.AcctSessionID)
	set(&r.AcctMultiSessionID, p.AcctMultiSessionID)
	if p.HasNASPort {
		r.NASPort, r.HasNASPort = p.NASPort, true
	}
	if len(p.Class) > 0 {
		r.Class = append(r.Class[:0], p.Class...)
	}
	if p.FramedIP.IsValid() {
		r.FramedIP = p.FramedIP
	}
	if p.FramedIPv6.IsValid() {
		r.FramedIPv6 = p.FramedIPv6
	}
	if p.FramedIPv6Prefix.IsValid() {
		r.FramedIPv6Prefix = p.FramedIPv6Prefix
	}
	if p.Interim > 0 {
		r.Interim = p.Interim
	}
	r.Updated = at
	switch u.Kind {
	case KindAccept:
		r.Authorized = at
		set(&r.Method, p.Method)
		r.VLAN = p.VLAN // a re-authentication's authorization replaces the last one
		r.Decider = p.Decider
		switch {
		case p.Decider.Local():
			r.Reconcile = ReconcileNeeded
		case r.Reconcile == ReconcileNeeded || r.Reconcile == ReconcileFailed:
			r.Reconcile = ReconcileSuperseded // re-authenticated through the cloud on its own
		}
	case KindStart, KindInterim:
		if r.State != StateStopped {
			r.State = StateActive
		}
		if r.Started.IsZero() {
			r.Started = at
			if u.Kind == KindInterim && p.SessionTime > 0 {
				r.Started = at.Add(-time.Duration(p.SessionTime) * time.Second)
			}
		}
		counters(r, p)
	case KindStop:
		if r.Started.IsZero() && p.SessionTime > 0 {
			r.Started = at.Add(-time.Duration(p.SessionTime) * time.Second)
		}
		counters(r, p)
		end(r, at, p.TerminateCause)
	}
}

func counters(r, p *Record) {
	if p.InputOctets > 0 || p.OutputOctets > 0 || p.SessionTime > 0 {
		r.InputOctets, r.OutputOctets, r.SessionTime = p.InputOctets, p.OutputOctets, p.SessionTime
	}
}

// end marks r stopped at at; a session that still needed reconciliation no longer does.
func end(r *Record, at time.Time, cause uint32) {
	if r.State != StateStopped {
		r.State, r.Stopped = StateStopped, at
	}
	if cause != 0 {
		r.TerminateCause = cause
	}
	if r.Reconcile == ReconcileNeeded || r.Reconcile == ReconcileFailed {
		r.Reconcile = ReconcileSuperseded
	}
}

// expiry sets r.Expires: StopGrace after its Stop, or MissedInterims intervals after it was last
// heard of.
func (s *Store) expiry(r *Record) {
	if r.State == StateStopped {
		r.Expires = r.Stopped.Add(s.opts.StopGrace)
		return
	}
	iv := r.Interim
	if iv == 0 {
		iv = s.opts.DefaultInterim
	}
	iv = max(iv, MinInterim)
	r.Expires = r.Updated.Add(time.Duration(s.opts.MissedInterims) * iv)
}

// reauthWindow bounds how long an unchanged re-authentication may go unwritten (reauthUnchanged).
const reauthWindow = time.Minute

// reauthUnchanged reports whether r, the live session old after an Access-Accept at at, differs
// from old only in the times that Accept refreshes (Authorized, Updated, Expires), old was updated
// less than reauthWindow ago, and the session has no address. Such an Accept is not written: a
// client re-authenticating over and over (MAB every few seconds, a load test) would otherwise cost
// a record write and a due-index move per Access-Accept. What is lost is only how fresh those
// three times are, by less than reauthWindow and less than half the session's missed-interim
// horizon, so the session cannot expire for want of the skipped write; a session with an address
// is always written, because the identity sinks report its re-authentication (edge/identity).
func (t *txn) reauthUnchanged(r, old *Record, at time.Time) bool {
	if !old.State.Live() || old.FramedIP.IsValid() || old.FramedIPv6.IsValid() || old.FramedIPv6Prefix.IsValid() ||
		r.FramedIP.IsValid() || r.FramedIPv6.IsValid() || r.FramedIPv6Prefix.IsValid() {
		return false
	}
	if d := at.Sub(old.Updated); d < 0 || d >= t.reauthWindow(old) {
		return false
	}
	same := *r
	same.Authorized, same.Updated, same.Expires = old.Authorized, old.Updated, old.Expires
	var err1, err2 error
	t.enc, err1 = appendRecord(t.enc[:0], &same)
	t.encOld, err2 = appendRecord(t.encOld[:0], old)
	return err1 == nil && err2 == nil && bytes.Equal(t.enc, t.encOld)
}

// reauthWindow is how long after r's last write an unchanged Accept is not written: reauthWindow,
// at most half of r's missed-interim horizon.
func (t *txn) reauthWindow(r *Record) time.Duration {
	iv := r.Interim
	if iv == 0 {
		iv = t.s.opts.DefaultInterim
	}
	return min(reauthWindow, time.Duration(t.s.opts.MissedInterims)*max(iv, MinInterim)/2)
}

func hasAddress(r *Record) bool {
	return r.FramedIP.IsValid() || r.FramedIPv6.IsValid() || r.FramedIPv6Prefix.IsValid()
}

// markKey is the marks' key for a NAS and a MAC in any form parseMAC reads: a hash of both, and
// the MAC's octets. Two pairs that share a key never share a mark's effect: a mark holds its MAC,
// and its sum covers the NAS (digest), so at worst one forgets the other's mark.
func (s *Store) markKey(nas, mac string) (uint64, [6]byte, bool) {
	m, ok := parseMAC(mac)
	if !ok {
		return 0, m, false
	}
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(nas)
	h.WriteByte(0)
	h.Write(m[:])
	return h.Sum64(), m, true
}

// digest sums the fields of an update that merge copies into the record (all but the times).
func (s *Store) digest(r *Record) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, p := range r.strings() {
		h.WriteString(*p)
		h.WriteByte(0)
	}
	var b [8 + 8 + 3]byte
	binary.BigEndian.PutUint64(b[0:], uint64(r.NASPort))
	binary.BigEndian.PutUint64(b[8:], uint64(r.Interim))
	b[16], b[17] = byte(r.Decider), byte(r.State)
	if r.HasNASPort {
		b[18] = 1
	}
	h.Write(b[:])
	h.Write(r.Class)
	return h.Sum64()
}

// mark returns the mark for key as this transaction sees it.
func (t *txn) mark(key uint64) (reauthMark, bool) {
	if m, ok := t.marks[key]; ok {
		return m, true
	}
	if t.forgotAll || t.forgot[key] {
		return reauthMark{}, false
	}
	m, ok := t.s.marks[key]
	return m, ok
}

func (t *txn) setMark(key uint64, m reauthMark) {
	if t.marks == nil {
		t.marks = map[uint64]reauthMark{}
	}
	t.marks[key] = m
}

// forget drops the mark of r's NAS and MAC (every mark when r is nil: a record that did not decode).
func (t *txn) forget(r *Record) {
	if r == nil {
		t.forgotAll, t.marks = true, nil
		return
	}
	k, _, ok := t.s.markKey(r.NAS, r.MAC)
	if !ok {
		return
	}
	delete(t.marks, k)
	if t.forgot == nil {
		t.forgot = map[uint64]bool{}
	}
	t.forgot[k] = true
}

// commitMarks applies the transaction's marks to the store's once it has committed.
func (t *txn) commitMarks() {
	m := t.s.marks
	if t.forgotAll {
		clear(m)
	}
	for k := range t.forgot {
		delete(m, k)
	}
	if len(m)+len(t.marks) > maxReauthMarks {
		clear(m)
	}
	for k, v := range t.marks {
		m[k] = v
	}
}

// match finds the session an update belongs to: by Acct-Session-Id at the NAS; else the latest
// live session of the MAC at the NAS (an Accept without Acct-Session-Id, a re-authentication, the
// first accounting of a session admitted by Accept) whose Acct-Session-Id, when both have one,
// agrees; else, without a MAC, the latest live session on the NAS's port.
func (t *txn) match(u *Update) (Record, bool, error) {
	p := &u.Rec
	if p.AcctSessionID != "" {
		prefix := asidPrefix(p.AcctSessionID, p.NAS)
		if id, ok := lastID(t.idx[string(bucketASID)], prefix); ok {
			r, found, err := t.get(id)
			if found || err != nil {
				return r, found, err
			}
		}
	}
	accept := func(r *Record) bool {
		return r.NAS == p.NAS && r.State.Live() && (r.AcctSessionID == "" || p.AcctSessionID == "" || r.AcctSessionID == p.AcctSessionID)
	}
	if p.MAC != "" {
		m, _ := parseMAC(p.MAC)
		var buf [maxFanout]uint64
		return t.first(t.s.macs.last(buf[:0], m, maxFanout), accept)
	}
	if pk := portComponent(p); pk != "" {
		return t.first(lastIDs(t.idx[string(bucketPort)], new(keyBuilder).str(p.NAS).str(pk).b, maxFanout), accept)
	}
	return Record{}, false, nil
}

// first returns the first record of ids (the last maxFanout of an index prefix, highest first)
// that ok accepts.
func (t *txn) first(ids []uint64, ok func(*Record) bool) (Record, bool, error) {
	for _, id := range ids {
		r, found, err := t.get(id)
		if err != nil {
			return Record{}, false, err
		}
		if found && ok(&r) {
			return r, true, nil
		}
	}
	return Record{}, false, nil
}

// nasReboot ends every live session of the NAS.
func (t *txn) nasReboot(nas string, at time.Time) error {
	prefix := new(keyBuilder).str(nas).b
	var ids []uint64
	c := t.idx[string(bucketNAS)].Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, keyID(k))
	}
	for _, id := range ids {
		old, found, err := t.get(id)
		if err != nil || !found || !old.State.Live() {
			continue // an undecodable record is left for the sweeper
		}
		r := old
		end(&r, at, terminateNASReboot)
		r.Updated = at
		t.s.expiry(&r)
		t.s.stampLocal(&r, &old, true)
		if err := t.put(&r, &old); err != nil {
			return err
		}
		t.changes = append(t.changes, change{c: ChangeEnded, prev: &old, cur: &r})
	}
	return nil
}

// nextID hands out the next record ID. The counter is read from the meta bucket once per
// transaction and written back once, when the transaction ends (saveNextID): in the same
// transaction as the records that use it, so no committed ID is handed out twice, at one Put per
// transaction instead of one per new session.
func (t *txn) nextID() (uint64, error) {
	t.loadNextID()
	id := t.next
	t.next++
	t.nextDirty, t.dirty = true, true
	return id, nil
}

// loadNextID reads the meta bucket's next ID into t.next, once per transaction.
func (t *txn) loadNextID() {
	if t.next != 0 {
		return
	}
	t.next = 1
	if v := t.tx.Bucket(bucketMeta).Get(metaNextID); len(v) == 8 {
		t.next = binary.BigEndian.Uint64(v)
	}
}

// saveNextID writes the counter back if this transaction moved it.
func (t *txn) saveNextID() error {
	if !t.nextDirty {
		return nil
	}
	return t.tx.Bucket(bucketMeta).Put(metaNextID, binary.BigEndian.AppendUint64(nil, t.next))
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id) }

// keyID is the ID that ends every index key.
func keyID(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func (t *txn) get(id uint64) (Record, bool, error) {
	v := t.recs.Get(idKey(id))
	if v == nil {
		return Record{}, false, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return Record{}, false, fmt.Errorf("session %d: %w", id, err)
	}
	return r, true, nil
}

// put writes r and swaps its index entries from old's (nil: a new record).
func (t *txn) put(r, old *Record) error {
	t.dirty = true
	t.forget(r)
	if old != nil {
		t.forget(old)
	}
	v, err := appendRecord(make([]byte, 0, 256), r)
	if err != nil {
		return err
	}
	if err := t.recs.Put(idKey(r.ID), v); err != nil {
		return err
	}
	t.recordMACs(old, r)
	var oldKeys []indexKey
	if old != nil {
		oldKeys = indexKeys(old)
	}
	return t.reindex(oldKeys, indexKeys(r))
}

func (t *txn) reindex(old, cur []indexKey) error {
	for _, o := range old {
		if !containsKey(cur, o) {
			if err := t.idx[string(o.bucket)].Delete(o.key); err != nil {
				return err
			}
		}
	}
	for _, n := range cur {
		if !containsKey(old, n) {
			if err := t.idx[string(n.bucket)].Put(n.key, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove deletes the record with id (old is its decoded value, nil when it did not decode, in
// which case its due entry in the ended or live index is what the caller deletes).
func (t *txn) remove(id uint64, old *Record, why Change) error {
	t.dirty = true
	t.forget(old)
	if old != nil {
		if err := t.reindex(indexKeys(old), nil); err != nil {
			return err
		}
		t.recordMACs(old, nil)
	}
	if err := t.recs.Delete(idKey(id)); err != nil {
		return err
	}
	t.entries--
	if old != nil {
		t.changes = append(t.changes, change{c: why, prev: old})
	}
	return nil
}

// admit makes room for one new session at MaxEntries: it evicts the ended session that expires
// first, else the live session whose missed-interim deadline comes first.
func (t *txn) admit() error {
	for range maxEvictPerAdmit {
		if t.s.entries.Load()+t.entries < int64(t.s.opts.MaxEntries) {
			return nil
		}
		var k []byte
		for _, b := range [][]byte{bucketEnded, bucketLive} {
			if k, _ = t.idx[string(b)].Cursor().First(); k != nil {
				k = append([]byte(nil), k...)
				if err := t.evict(b, k, ChangeEvicted); err != nil {
					return err
				}
				break
			}
		}
		if k == nil {
			return nil // counted entries with no index entry: nothing to evict, admit anyway
		}
	}
	return nil
}

// evict removes the record an ended/live index key names (and a stale key itself).
func (t *txn) evict(bucket, k []byte, why Change) error {
	id := keyID(k)
	old, found, err := t.get(id)
	switch {
	case err != nil: // undecodable: remove it blind
		if err := t.remove(id, nil, why); err != nil {
			return err
		}
	case found && bytes.Equal(k, dueKey(old.Expires, id)):
		return t.remove(id, &old, why)
	}
	t.dirty = true
	return t.idx[string(bucket)].Delete(k)
}

// Sweep removes every session expired now (StopGrace after its Stop, or MissedInterims intervals
// of silence), sweepBatch per transaction, and returns how many it removed.
func (s *Store) Sweep() (int, error) {
	now := s.now()
	bound := binary.BigEndian.AppendUint64(nil, uint64(max(timeToNanos(now), 0)))
	total := 0
	for {
		n := 0
		err := s.update(func(t *txn) error {
			for _, b := range [][]byte{bucketEnded, bucketLive} {
				var keys [][]byte
				c := t.idx[string(b)].Cursor()
				for k, _ := c.First(); k != nil && n+len(keys) < sweepBatch && bytes.Compare(k[:min(8, len(k))], bound) <= 0; k, _ = c.Next() {
					keys = append(keys, append([]byte(nil), k...))
				}
				for _, k := range keys {
					if err := t.evict(b, k, ChangeExpired); err != nil {
						return err
					}
				}
				n += len(keys)
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("session: sweep: %w", err)
		}
		if n < sweepBatch {
			return total, nil
		}
	}
}

// MarkReconciled records the outcome of a re-authorization through the cloud: ok marks the
// session reconciled, !ok failed (it leaves the NeedingReconcile list either way; a later
// Accept from the cloud supersedes a failure). A session that ended or re-authenticated on its
// own in the meantime stays superseded.
func (s *Store) MarkReconciled(id uint64, ok bool) error {
	err := s.update(func(t *txn) error {
		old, found, err := t.get(id)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		r := old
		r.ReconcileAttempts++
		r.ReconcileAt = s.now().UTC()
		if r.Reconcile == ReconcileNeeded || r.Reconcile == ReconcileFailed {
			r.Reconcile = ReconcileFailed
			if ok {
				r.Reconcile = ReconcileDone
			}
		}
		s.stampLocal(&r, &old, true)
		if err := t.put(&r, &old); err != nil {
			return err
		}
		t.changes = append(t.changes, change{c: ChangeUpdated, prev: &old, cur: &r})
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("session: mark reconciled %d: %w", id, err)
	}
	return err
}

// Stats returns a snapshot. The file size is zero if it cannot be read.
func (s *Store) Stats() Stats {
	st := Stats{
		Entries: int(s.entries.Load()), Live: int(s.live.Load()), NeedReconcile: int(s.recon.Load()),
		Created: s.created.Load(), Starts: s.starts.Load(), Stops: s.stops.Load(), Expired: s.expired.Load(),
		Evicted: s.evicted.Load(), Applied: s.applied.Load(), Refused: s.refused.Load(), Commits: s.commits.Load(), WriteErrors: s.writeErrs.Load(),
		MergeWon: s.mergeWon.Load(), MergeLost: s.mergeLost.Load(), MergeRefused: s.mergeRefused.Load(), Reauths: s.reauths.Load(),
		MaxEntries: s.opts.MaxEntries, StopGrace: s.opts.StopGrace, MissedInterims: s.opts.MissedInterims,
	}
	s.mu.Lock()
	for k, n := range s.active {
		st.Active = append(st.Active, NASCount{NAS: k.nas, Site: k.site, Live: n})
	}
	s.mu.Unlock()
	sort.Slice(st.Active, func(i, j int) bool {
		a, b := st.Active[i], st.Active[j]
		return a.NAS < b.NAS || a.NAS == b.NAS && a.Site < b.Site
	})
	_ = s.view(func(tx *bolt.Tx) error { st.DBSize = tx.Size(); return nil })
	return st
}

// indexKey is one index entry of a record.
type indexKey struct {
	bucket []byte
	key    []byte
}

func containsKey(ks []indexKey, k indexKey) bool {
	for _, o := range ks {
		if bytes.Equal(o.bucket, k.bucket) && bytes.Equal(o.key, k.key) {
			return true
		}
	}
	return false
}

// keyBuilder appends length-prefixed components.
type keyBuilder struct{ b []byte }

func (k *keyBuilder) str(s string) *keyBuilder {
	k.b = binary.AppendUvarint(k.b, uint64(len(s)))
	k.b = append(k.b, s...)
	return k
}

func (k *keyBuilder) id(id uint64) []byte { return binary.BigEndian.AppendUint64(k.b, id) }

func asidPrefix(asid, nas string) []byte { return new(keyBuilder).str(asid).str(nas).b }

// portComponent is the port index component to look a record up by: NAS-Port-Id when it has
// one, else NAS-Port (both are indexed).
func portComponent(r *Record) string {
	if r.NASPortID != "" {
		return "i" + r.NASPortID
	}
	if r.HasNASPort {
		return "p" + strconv.FormatUint(uint64(r.NASPort), 10)
	}
	return ""
}

func ipComponent(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return string(b[:])
	}
	b := a.As16()
	return string(b[:])
}

// dueKey is the ended/live index key: expiry then ID.
func dueKey(t time.Time, id uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(max(timeToNanos(t), 0))), id)
}

// indexKeys lists every index entry of r in the file (the MAC index is in memory: recordMACs).
func indexKeys(r *Record) []indexKey {
	ks := make([]indexKey, 0, 10)
	add := func(b []byte, k []byte) { ks = append(ks, indexKey{b, k}) }
	if r.AcctSessionID != "" {
		add(bucketASID, new(keyBuilder).str(r.AcctSessionID).str(r.NAS).id(r.ID))
	}
	if r.UserName != "" && !userIsMAC(r) { // a MAB User-Name is found through the MAC index
		add(bucketUser, new(keyBuilder).str(foldUser(r.UserName)).id(r.ID))
	}
	for _, a := range []netip.Addr{r.FramedIP, r.FramedIPv6, r.FramedIPv6Prefix.Addr()} {
		if a.IsValid() {
			add(bucketIP, new(keyBuilder).str(ipComponent(a)).id(r.ID))
		}
	}
	add(bucketNAS, new(keyBuilder).str(r.NAS).id(r.ID))
	if r.NASPortID != "" {
		add(bucketPort, new(keyBuilder).str(r.NAS).str("i"+r.NASPortID).id(r.ID))
	}
	if r.HasNASPort {
		add(bucketPort, new(keyBuilder).str(r.NAS).str("p"+strconv.FormatUint(uint64(r.NASPort), 10)).id(r.ID))
	}
	if r.State.Live() {
		add(bucketLive, dueKey(r.Expires, r.ID))
	} else {
		add(bucketEnded, dueKey(r.Expires, r.ID))
	}
	if r.Reconcile == ReconcileNeeded {
		add(bucketRecon, dueKey(r.Authorized, r.ID))
	}
	if r.Origin != "" {
		add(bucketOrigin, (&keyBuilder{b: originPrefix(r.Origin, r.OriginID)}).id(r.ID))
	}
	return ks
}

// lastID returns the highest ID under prefix.
func lastID(b *bolt.Bucket, prefix []byte) (uint64, bool) {
	ids := lastIDs(b, prefix, 1)
	if len(ids) == 0 {
		return 0, false
	}
	return ids[0], true
}

// lastIDs returns up to n IDs under prefix, highest first. Keys under a prefix are the prefix and
// an 8-octet ID, so they sort by ID; a longer key (another component that begins with the same
// octets) is skipped.
func lastIDs(b *bolt.Bucket, prefix []byte, n int) []uint64 {
	var out []uint64
	c := b.Cursor()
	end := prefixEnd(prefix)
	var k []byte
	if end == nil {
		k, _ = c.Last()
	} else if k, _ = c.Seek(end); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < n; k, _ = c.Prev() {
		if len(k) == len(prefix)+8 {
			out = append(out, keyID(k))
		}
	}
	return out
}

// prefixEnd is the first key after every key with prefix, or nil when there is none.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
