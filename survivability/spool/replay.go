package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	// MaxWindow bounds Replay's window: more outstanding requests than
	// RADIUS identifiers on a few connections buys nothing.
	MaxWindow = 4096
	// readChunk is how many records Replay reads per read transaction, so
	// a long replay never holds a read transaction that blocks bbolt's
	// remap.
	readChunk = 256
	// maxReasonLen bounds the reason stored with a quarantined record.
	maxReasonLen = 1024
)

// errNilSend: Replay was called without a send function.
var errNilSend = errors.New("spool: replay: nil send")

// SendFunc hands one record to the upstream; see ReplayOptions.Send.
type SendFunc func(e Entry, delay time.Duration, done func(error))

// ReplayOptions configure one ReplayWith call.
type ReplayOptions struct {
	// Window bounds the records outstanding: handed to Send and not yet
	// deleted (or quarantined). 1..MaxWindow. It is also the bound on
	// duplicates after a crash (docs/spool.md).
	Window int
	// Key returns a record's ordering key (mxedge uses the NAS and the
	// Acct-Session-Id). Records with one key are sent one at a time in
	// sequence order, and the next one only after the previous one's
	// delete has been committed, so even a replay interrupted by a crash
	// never shows the upstream a record after a later one of its key.
	// Records with different keys are sent in parallel, up to Window.
	// nil gives every record its own key.
	Key func(Entry) string
	// Send is given each record with delay = Now - Received, the time it
	// spent in the spool, for Acct-Delay-Time (see AddDelay). It must call
	// done exactly once, from any goroutine, possibly before it returns:
	// done(nil) when the upstream's Accounting-Response arrived, done(err)
	// otherwise. Only the first call counts; later ones are ignored, so a
	// completion that races with a timeout cannot settle a record twice.
	// An err wrapping ErrPermanent quarantines the record (it can never be
	// delivered); any other err stops the replay.
	Send SendFunc
}

// replayResult is one done callback's outcome.
type replayResult struct {
	seq uint64
	err error
}

// Replay is ReplayWith without ordering keys: records are sent in sequence
// order, up to window outstanding.
func (s *Spool) Replay(ctx context.Context, window int, send func(e Entry, delay time.Duration, done func(error))) (replayed int, err error) {
	return s.ReplayWith(ctx, ReplayOptions{Window: window, Send: send})
}

// ReplayWith hands the spooled records to o.Send in sequence (arrival)
// order per key, starting from the first one not yet deleted, with at most
// o.Window of them outstanding.
//
// A record is deleted only after its done(nil), in a transaction shared
// with the other successes at hand; its window slot frees once the delete
// is committed, so at most Window records are ever sent but not yet deleted
// (the duplicate bound after a crash, docs/spool.md). Records appended
// while the replay runs are replayed too: it returns nil when the spool is
// empty.
//
// A done(err) with err wrapping ErrPermanent moves the record to the
// quarantine bucket with err as its reason (kept on disk, logged at Error,
// counted in Stats), and the next record of its key may go: an operator
// would rather have a session's Stop than the session blocked forever
// behind a record no upstream will take. Any other done(err) stops the
// replay: no new record is sent, the outstanding ones are waited for
// (those that succeed are deleted), and ReplayWith returns the error
// wrapped with the record's seq. The failed record, and every later record
// of its key, stay in the spool for the next call. Cancelling ctx stops it
// the same way and returns ctx.Err(). ReplayWith always waits for every
// outstanding done before it returns, so Send must bound its own wait.
// replayed counts the records deleted by this call. Only one replay runs at
// a time (ErrReplayRunning).
func (s *Spool) ReplayWith(ctx context.Context, o ReplayOptions) (replayed int, err error) {
	if o.Window < 1 || o.Window > MaxWindow {
		return 0, fmt.Errorf("%w: %d, want 1..%d", ErrBadWindow, o.Window, MaxWindow)
	}
	if o.Send == nil {
		return 0, errNilSend
	}
	if !s.enter() {
		return 0, ErrClosed
	}
	defer s.active.Done()
	if !s.replaying.CompareAndSwap(false, true) {
		return 0, ErrReplayRunning
	}
	defer s.replaying.Store(false)

	r := &replayRun{
		s: s, o: o,
		// results never blocks a done: at most Window are outstanding and
		// each delivers at most one result.
		results: make(chan replayResult, o.Window),
		lanes:   map[string]*lane{},
		keys:    map[uint64]string{},
		// Records waiting behind an earlier one of their key are held in
		// memory; the bound keeps a backlog of one long session from
		// being read into memory whole.
		maxHeld: 2*o.Window + readChunk,
	}
	return r.run(ctx)
}

// lane is one key's records during a replay: at most one outstanding
// (busy), the rest queued in sequence order.
type lane struct {
	busy bool
	q    []Entry
}

// replayRun is one ReplayWith call's state; only its goroutine touches it.
type replayRun struct {
	s       *Spool
	o       ReplayOptions
	results chan replayResult

	buf     []Entry // read ahead, in sequence order, not yet placed in a lane
	after   uint64  // highest seq read
	lanes   map[string]*lane
	ready   []string          // keys whose lane is idle and has a queued head
	keys    map[uint64]string // key of each outstanding seq
	held    int               // records queued in lanes
	maxHeld int

	outstanding int
	stopErr     error
	replayed    int
}

func (r *replayRun) run(ctx context.Context) (int, error) {
	for {
		r.fill(ctx)
		if r.outstanding == 0 {
			// Nothing outstanding and fill sent nothing more: the spool is
			// drained, or the replay stopped.
			return r.replayed, r.stopErr
		}
		got := make([]replayResult, 0, r.outstanding)
		if r.stopErr == nil {
			select {
			case res := <-r.results:
				got = append(got, res)
			case <-ctx.Done():
				r.stopErr = ctx.Err()
				continue
			}
		} else {
			got = append(got, <-r.results)
		}
	drain:
		for len(got) < r.outstanding {
			select {
			case res := <-r.results:
				got = append(got, res)
			default:
				break drain
			}
		}
		r.settle(got)
	}
}

// fill sends records until the window is full, the replay stopped, or
// nothing more may go.
func (r *replayRun) fill(ctx context.Context) {
	for r.stopErr == nil && r.outstanding < r.o.Window {
		if err := ctx.Err(); err != nil {
			r.stopErr = err
			return
		}
		if len(r.ready) > 0 {
			k := r.ready[0]
			r.ready = r.ready[1:]
			l := r.lanes[k]
			e := l.q[0]
			l.q = l.q[1:]
			r.held--
			r.send(k, l, e)
			continue
		}
		if r.held >= r.maxHeld {
			return // wait for a lane to move
		}
		if len(r.buf) == 0 {
			var err error
			if r.buf, err = r.s.readAfter(r.after, readChunk); err != nil {
				r.stopErr = err
				return
			}
			if len(r.buf) == 0 {
				return // drained for now
			}
		}
		e := r.buf[0]
		r.buf = r.buf[1:]
		r.after = e.Seq
		if r.o.Key == nil {
			r.send("", nil, e)
			continue
		}
		k := r.o.Key(e)
		l := r.lanes[k]
		if l == nil {
			l = &lane{}
			r.lanes[k] = l
		}
		if l.busy || len(l.q) > 0 {
			l.q = append(l.q, e)
			r.held++
			continue
		}
		r.send(k, l, e)
	}
}

func (r *replayRun) send(k string, l *lane, e Entry) {
	if l != nil {
		l.busy = true
	}
	r.outstanding++
	r.keys[e.Seq] = k
	seq := e.Seq
	// The completion is claimed once: whatever calls done, and however
	// often, exactly one result reaches the replay.
	var claimed atomic.Bool
	r.o.Send(e, max(r.s.now().Sub(e.Received), 0), func(err error) {
		if claimed.CompareAndSwap(false, true) {
			r.results <- replayResult{seq: seq, err: err}
		}
	})
}

// settle deletes the delivered records, quarantines the permanent
// failures, stops the replay on any other failure, and lets the lanes of
// settled records move on.
func (r *replayRun) settle(got []replayResult) {
	var ok []uint64
	var perm []quarantined
	for _, res := range got {
		switch {
		case res.err == nil:
			ok = append(ok, res.seq)
		case errors.Is(res.err, ErrPermanent):
			perm = append(perm, quarantined{seq: res.seq, reason: res.err.Error()})
		case r.stopErr == nil:
			// The lane stays busy, so no later record of this key goes
			// in this call; the record stays first in line for the next.
			r.stopErr = fmt.Errorf("spool: replay seq %d: %w", res.seq, res.err)
		}
	}
	if len(ok) > 0 {
		if err := r.s.deleteRecords(ok); err != nil {
			// The records stay and will be sent again: a failed delete is
			// a duplicate, never a loss. Their lanes stay blocked.
			if r.stopErr == nil {
				r.stopErr = err
			}
			r.s.log.Error("spool delete failed", "err", err)
		} else {
			r.replayed += len(ok)
			for _, seq := range ok {
				r.release(seq)
			}
		}
	}
	if len(perm) > 0 {
		if err := r.s.quarantine(perm); err != nil {
			if r.stopErr == nil {
				r.stopErr = err
			}
			r.s.log.Error("spool quarantine failed", "err", err)
		} else {
			for _, q := range perm {
				r.s.log.Error("spool record quarantined", "id", q.seq, "err", q.reason)
				r.release(q.seq)
			}
		}
	}
	for _, res := range got {
		delete(r.keys, res.seq)
	}
	r.outstanding -= len(got)
}

// release frees the lane of the settled record seq for its next record.
func (r *replayRun) release(seq uint64) {
	if r.o.Key == nil {
		return
	}
	k := r.keys[seq]
	l := r.lanes[k]
	if l == nil {
		return
	}
	l.busy = false
	if len(l.q) > 0 {
		r.ready = append(r.ready, k)
	} else {
		delete(r.lanes, k)
	}
}

// quarantined is a record to move aside and why.
type quarantined struct {
	seq    uint64
	reason string
}

// readAfter returns up to n decodable records with seq > after, in order.
// Records that do not decode are moved to the quarantine bucket (logged and
// counted) and skipped: sending garbage upstream helps nobody, and
// deleting them would lose what an operator might still recover.
func (s *Spool) readAfter(after uint64, n int) ([]Entry, error) {
	for {
		var out []Entry
		var bad []quarantined
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
				if len(k) != keyLen {
					continue // not written by this package; never sent
				}
				seq := binary.BigEndian.Uint64(k)
				e, err := decodeRecord(seq, v)
				if err != nil {
					bad = append(bad, quarantined{seq: seq, reason: err.Error()})
					continue
				}
				out = append(out, e)
			}
			return nil
		})
		if err != nil {
			if errors.Is(err, berrors.ErrDatabaseNotOpen) {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("spool: read: %w", err)
		}
		if len(bad) == 0 {
			return out, nil
		}
		if err := s.quarantine(bad); err != nil {
			return nil, err
		}
		for _, q := range bad {
			s.log.Error("spool record quarantined", "id", q.seq, "err", q.reason)
		}
		// Read again: the chunk may now hold fewer than n good records.
	}
}

// deleteRecords removes the records seqs in one transaction (one fsync) and
// keeps the counters.
func (s *Spool) deleteRecords(seqs []uint64) error {
	q := make([]quarantined, len(seqs))
	for i, seq := range seqs {
		q[i].seq = seq
	}
	return s.removeRecords(q, false)
}

// quarantine moves the records to the quarantine bucket with their
// reasons.
func (s *Spool) quarantine(recs []quarantined) error {
	return s.removeRecords(recs, true)
}

// removeRecords deletes the records, first copying each (with its reason)
// to the quarantine buckets when moveAside is set.
func (s *Spool) removeRecords(recs []quarantined, moveAside bool) error {
	var delta meta
	var moved int
	err := s.db.Update(func(tx *bolt.Tx) error {
		delta, moved = meta{}, 0
		rb, mb := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
		qb, why := tx.Bucket(bucketQuarantine), tx.Bucket(bucketQuarantineReason)
		for _, q := range recs {
			k := seqKey(q.seq)
			v := rb.Get(k)
			if v == nil {
				continue
			}
			if moveAside {
				if err := qb.Put(k, append([]byte(nil), v...)); err != nil {
					return err
				}
				reason := q.reason
				if len(reason) > maxReasonLen {
					reason = reason[:maxReasonLen]
				}
				if err := why.Put(k, []byte(reason)); err != nil {
					return err
				}
				moved++
			}
			delta.count--
			delta.bytes -= int64(keyLen + len(v))
			if err := rb.Delete(k); err != nil {
				return err
			}
		}
		if delta.count == 0 {
			return errNoWrite
		}
		m := readMeta(mb)
		m.count += delta.count
		m.bytes += delta.bytes
		return m.write(mb)
	})
	if errors.Is(err, errNoWrite) {
		return nil
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("spool: delete: %w", err)
	}
	s.mu.Lock()
	s.count += int(delta.count)
	s.bytes += delta.bytes
	s.qdepth += moved
	s.mu.Unlock()
	if moveAside {
		s.quarantined.Add(uint64(moved))
	} else {
		s.replayed.Add(uint64(-delta.count))
	}
	return nil
}

// QuarantinedRecord is one record Replay moved aside.
type QuarantinedRecord struct {
	Entry
	Reason string
}

// Quarantine returns up to n quarantined records (decodable ones with
// their entry, undecodable ones with only Seq set) and the reason each was
// moved aside, in sequence order. They are kept for the operator: the spool
// never sends or deletes them.
func (s *Spool) Quarantine(n int) ([]QuarantinedRecord, error) {
	var out []QuarantinedRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		why := tx.Bucket(bucketQuarantineReason)
		c := tx.Bucket(bucketQuarantine).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			if len(k) != keyLen {
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			e, err := decodeRecord(seq, v)
			if err != nil {
				e = Entry{Seq: seq}
			}
			reason := string(why.Get(k))
			if reason == "" {
				reason = "undecodable record (seq " + strconv.FormatUint(seq, 10) + ")"
			}
			out = append(out, QuarantinedRecord{Entry: e, Reason: reason})
		}
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	return out, err
}
