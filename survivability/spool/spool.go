package spool

import (
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

// Buckets. See docs/spool.md for the file layout.
var (
	bucketRecords    = []byte("records")    // 8-octet BE seq -> encoded record
	bucketQuarantine = []byte("quarantine") // 8-octet BE seq -> record value Replay moved aside, kept for the operator
	// bucketQuarantineReason holds why each quarantined record was moved.
	bucketQuarantineReason = []byte("quarantine-reason") // 8-octet BE seq -> reason text
	bucketMeta             = []byte("meta")              // schema, last seq, record count, byte count

	metaSchema  = []byte("schema")
	metaLastSeq = []byte("last-seq") // highest seq ever assigned: seqs are never reused
	metaCount   = []byte("count")
	metaBytes   = []byte("bytes")
)

const (
	schemaVersion = 1
	// fullLogEvery rate-limits the spool-full Error line: a NAS
	// retransmitting into a full spool must not flood the journal.
	fullLogEvery = 10 * time.Second
)

// errNoWrite rolls back a group-commit transaction that stored nothing
// (every record refused), so a full spool costs no fsync.
var errNoWrite = errors.New("spool: nothing to write")

// Entry is one spooled Accounting-Request.
type Entry struct {
	// Seq is the sequence number Append assigned: unique, increasing in
	// commit order, never reused. Append ignores the caller's value.
	Seq uint64
	// Received is when mxedge received the request; Append sets it from
	// Options.Now when zero. Replay's delay is measured from it.
	Received time.Time
	// Client is the NAS client's configured name; Src its source address
	// (ip:port). Each at most 255 octets.
	Client string
	Src    string
	// Packet is the raw Accounting-Request as received from the NAS and
	// validated by the proxy (RFC 2866 §4.1). Append checks its framing
	// again and stores it up to its Length field.
	Packet []byte
}

// encodedLen is the size the entry takes in MaxBytes accounting: key plus
// encoded value.
func (e Entry) encodedLen() int64 {
	return int64(keyLen + 1 + 8 +
		uvarintLen(len(e.Client)) + len(e.Client) +
		uvarintLen(len(e.Src)) + len(e.Src) +
		uvarintLen(len(e.Packet)) + len(e.Packet))
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// Stats is a snapshot for metrics and `mxedge status`.
type Stats struct {
	Appended     uint64 // records made durable since Open
	Replayed     uint64 // records deleted after a successful send since Open
	FullRefusals uint64 // Appends refused with ErrFull since Open
	AppendErrors uint64 // Appends that failed otherwise (disk error): not stored, not answered
	Commits      uint64 // append transactions committed (one fsync each) since Open
	Quarantined  uint64 // records moved aside by Replay since Open (undecodable, or ErrPermanent)
	// QuarantineDepth is the records in the quarantine bucket, kept on
	// disk for the operator (also those from before Open).
	QuarantineDepth int
	Depth           int           // records waiting for replay
	Bytes           int64         // their encoded size, what MaxBytes bounds
	Oldest          time.Time     // arrival of the oldest record; zero when empty
	OldestAge       time.Duration // Now - Oldest; zero when empty
}

// Spool is the durable accounting spool. Its methods are safe for
// concurrent use; Replay runs one at a time.
type Spool struct {
	opts Options
	db   *bolt.DB
	log  *slog.Logger
	now  func() time.Time

	// mu guards the group-commit queue, the leader flag, closed and the
	// in-memory mirror of the meta counters (updated by deltas after each
	// commit, so commits finishing out of order cannot skew it).
	mu      sync.Mutex
	pending []*appendReq
	leading bool
	closed  bool
	count   int
	bytes   int64
	qdepth  int // records in the quarantine bucket
	// active counts Appends and Replays in flight; Close waits for them.
	active sync.WaitGroup

	replaying atomic.Bool

	appended     atomic.Uint64
	replayed     atomic.Uint64
	fullRefusals atomic.Uint64
	appendErrs   atomic.Uint64
	commits      atomic.Uint64
	quarantined  atomic.Uint64
	lastFullLog  atomic.Int64 // Unix nanos of the last spool-full log line

	// beforeCommit, when set (tests only), runs in the leader before each
	// group-commit transaction with the batch size.
	beforeCommit func(batch int)
}

// appendReq is one Append waiting in the group-commit queue.
type appendReq struct {
	e    Entry
	size int64
	seq  uint64
	err  error
	// wake receives true when this caller becomes the leader, false when
	// a leader has set seq and err.
	wake chan bool
}

// Open opens (creating if needed) the spool at o.Path. A file locked by
// another process gives ErrLocked after o.OpenTimeout.
func Open(o Options) (*Spool, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", o.Path, err)
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{
		Timeout: o.OpenTimeout,
		// Replay frees pages in bulk; the hashmap free list stays fast.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, o.Path, o.OpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", o.Path, err)
	}
	s := &Spool{opts: o, db: db, log: o.Logger, now: o.Now}
	if err := s.initSchema(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if s.qdepth > 0 {
		s.log.Warn("spool holds quarantined records", "reason", fmt.Sprintf("%d records Replay could not deliver", s.qdepth))
	}
	if s.count > 0 {
		// Records from before a restart: the operator wants to know they
		// are still waiting (Stats has the figures).
		s.log.Warn("spool holds records to replay", "reason", fmt.Sprintf("%d records, %d bytes", s.count, s.bytes))
	}
	return s, nil
}

func (s *Spool) initSchema() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketQuarantine, bucketQuarantineReason, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("spool: create bucket %s: %w", b, err)
			}
		}
		m := tx.Bucket(bucketMeta)
		if v := m.Get(metaSchema); v == nil {
			if err := m.Put(metaSchema, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
				return err
			}
		} else if len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
			return fmt.Errorf("%w: file schema %x, this binary knows %d", ErrUnknownVersion, v, schemaVersion)
		}
		mt := readMeta(m)
		s.count, s.bytes = int(mt.count), mt.bytes
		// The quarantine holds what Replay could never deliver: few records,
		// so counting them once here costs nothing.
		s.qdepth = tx.Bucket(bucketQuarantine).Stats().KeyN
		return nil
	})
}

// meta is the meta bucket's counters, read and written inside each write
// transaction so they commit atomically with the records.
type meta struct {
	lastSeq uint64
	count   int64
	bytes   int64
}

func readMeta(b *bolt.Bucket) meta {
	u := func(k []byte) uint64 {
		if v := b.Get(k); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
		return 0
	}
	return meta{lastSeq: u(metaLastSeq), count: int64(u(metaCount)), bytes: int64(u(metaBytes))}
}

func (m meta) write(b *bolt.Bucket) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{metaLastSeq, m.lastSeq}, {metaCount, uint64(max(m.count, 0))}, {metaBytes, uint64(max(m.bytes, 0))}} {
		if err := b.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// Append stores e durably and returns its sequence number. It returns only
// after the bbolt transaction holding the record has been committed and
// fsync'd, so the caller may then send the Accounting-Response (RFC 2866
// §2). Concurrent Appends are group-committed: the first caller to find no
// commit running leads and commits every record queued at that moment in
// one transaction (one fsync); callers arriving meanwhile queue for the
// next one, whose leader is the first of them. Sequence numbers follow
// commit order.
//
// When the spool is full Append returns ErrFull: do not answer the NAS so
// that it keeps the record. Any other error also means the record is not
// stored. e.Seq is ignored; a zero e.Received is set from Options.Now.
func (s *Spool) Append(e Entry) (uint64, error) {
	e, err := s.prepare(e)
	if err != nil {
		return 0, err
	}
	req := &appendReq{e: e, size: e.encodedLen(), wake: make(chan bool, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	s.active.Add(1)
	defer s.active.Done()
	s.pending = append(s.pending, req)
	if s.leading {
		s.mu.Unlock()
		if lead := <-req.wake; !lead {
			return req.seq, req.err
		}
		s.mu.Lock() // promoted: lead the next group, which includes req
	} else {
		s.leading = true
	}
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()

	s.commitBatch(batch, req)

	// Hand the lead to the first caller that queued during the commit, or
	// give it up. The handoff (rather than committing in a loop) bounds
	// every caller's wait to two commits.
	s.mu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].wake <- true
	} else {
		s.leading = false
	}
	s.mu.Unlock()
	return req.seq, req.err
}

// prepare validates e and fills defaults.
func (s *Spool) prepare(e Entry) (Entry, error) {
	l, err := checkAccountingRequest(e.Packet)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	if len(e.Client) > maxNameLen || len(e.Src) > maxNameLen {
		return Entry{}, fmt.Errorf("%w: client or source name longer than %d octets", ErrBadEntry, maxNameLen)
	}
	e.Seq = 0
	e.Packet = e.Packet[:l] // RFC 2865 §3: octets beyond Length are padding
	if e.Received.IsZero() {
		e.Received = s.now()
	}
	if !time.Unix(0, e.Received.UnixNano()).Equal(e.Received) {
		// Stored as Unix nanoseconds: years 1678..2262.
		return Entry{}, fmt.Errorf("%w: received time %v out of range", ErrBadEntry, e.Received)
	}
	return e, nil
}

// commitBatch stores batch in one write transaction, sets every request's
// seq and err, and wakes every request but self.
func (s *Spool) commitBatch(batch []*appendReq, self *appendReq) {
	if s.beforeCommit != nil {
		s.beforeCommit(len(batch))
	}
	var stored, refused int
	var delta meta
	err := s.db.Update(func(tx *bolt.Tx) error {
		stored, refused, delta = 0, 0, meta{}
		recs, mb := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
		// Keys only ever grow: fill pages completely instead of bbolt's
		// default half, halving the pages written per commit.
		recs.FillPercent = 1.0
		m := readMeta(mb)
		for _, r := range batch {
			r.seq, r.err = 0, nil
			switch {
			case m.count+1 > int64(s.opts.MaxRecords):
				r.err = fmt.Errorf("%w: %d records (max records)", ErrFull, m.count)
			case m.bytes+r.size > s.opts.MaxBytes:
				r.err = fmt.Errorf("%w: %d bytes (max bytes)", ErrFull, m.bytes)
			}
			if r.err != nil {
				refused++
				continue
			}
			m.lastSeq++
			if err := recs.Put(seqKey(m.lastSeq), encodeRecord(r.e)); err != nil {
				return err
			}
			r.seq = m.lastSeq
			m.count++
			m.bytes += r.size
			delta.count++
			delta.bytes += r.size
			stored++
		}
		if stored == 0 {
			return errNoWrite
		}
		return m.write(mb)
	})
	if errors.Is(err, errNoWrite) {
		err = nil
	}
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			err = ErrClosed
		} else {
			err = fmt.Errorf("spool: append: %w", err)
			s.log.Error("spool write failed", "err", err)
		}
		s.appendErrs.Add(uint64(len(batch) - refused))
		for _, r := range batch {
			if r.err == nil {
				r.seq, r.err = 0, err
			}
		}
	} else if stored > 0 {
		s.mu.Lock()
		s.count += int(delta.count)
		s.bytes += delta.bytes
		s.mu.Unlock()
		s.appended.Add(uint64(stored))
		s.commits.Add(1)
	}
	if refused > 0 {
		s.refusedFull(batch, refused)
	}
	for _, r := range batch {
		if r != self {
			r.wake <- false
		}
	}
}

// refusedFull counts refusals and logs one Error line per fullLogEvery:
// the operator must act (raise the bound, fix the WAN) before NASes give
// up retransmitting.
func (s *Spool) refusedFull(batch []*appendReq, n int) {
	s.fullRefusals.Add(uint64(n))
	now := s.now().UnixNano()
	last := s.lastFullLog.Load()
	if last != 0 && now-last < int64(fullLogEvery) || !s.lastFullLog.CompareAndSwap(last, now) {
		return
	}
	for _, r := range batch {
		if errors.Is(r.err, ErrFull) {
			s.log.Error("spool full, accounting refused", "nas", r.e.Client, "err", r.err,
				"reason", fmt.Sprintf("%d refusals since open", s.fullRefusals.Load()))
			return
		}
	}
}

// Len returns the number of records waiting for replay.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Bytes returns the encoded size of the records waiting, what MaxBytes
// bounds.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Stats returns a snapshot. Oldest is zero if the file cannot be read.
func (s *Spool) Stats() Stats {
	st := Stats{
		Appended:     s.appended.Load(),
		Replayed:     s.replayed.Load(),
		FullRefusals: s.fullRefusals.Load(),
		AppendErrors: s.appendErrs.Load(),
		Commits:      s.commits.Load(),
		Quarantined:  s.quarantined.Load(),
		Depth:        s.Len(),
		Bytes:        s.Bytes(),
	}
	s.mu.Lock()
	st.QuarantineDepth = s.qdepth
	s.mu.Unlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		// Only the arrival stamp of the first record is needed: read it in
		// place instead of decoding the record.
		if k, v := tx.Bucket(bucketRecords).Cursor().First(); k != nil && len(v) >= 9 && v[0] == codecV1 {
			st.Oldest = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
		}
		return nil
	})
	if err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		s.log.Warn("spool stats failed", "err", err)
	}
	if !st.Oldest.IsZero() {
		st.OldestAge = max(s.now().Sub(st.Oldest), 0)
	}
	return st
}

// Close waits for Appends and Replays in flight (cancel Replay's context
// first), then closes the file. Appends after Close return ErrClosed. Close
// is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.active.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

// enter registers a call that Close must wait for.
func (s *Spool) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active.Add(1)
	return true
}
