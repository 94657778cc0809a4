package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	// MaxWindow bounds Replay's window: more outstanding requests than
	// RADIUS identifiers on a few connections buys nothing.
	MaxWindow = 4096
	// readChunk is how many records Replay reads per read transaction, so
	// a long replay never holds a read transaction that blocks bbolt's
	// remap.
	readChunk = 256
)

// errNilSend: Replay was called without a send function.
var errNilSend = errors.New("spool: replay: nil send")

// replayResult is one done callback's outcome.
type replayResult struct {
	seq uint64
	err error
}

// Replay hands the spooled records to send in sequence (arrival) order,
// starting from the first one not yet deleted, with at most window of them
// outstanding (sent, done not yet called or the record not yet deleted).
// send is given delay = Now - Received, the time the record spent in the
// spool, for Acct-Delay-Time (see AddDelay). send must call done exactly
// once, from any goroutine, possibly before send returns: done(nil) when the
// upstream's Accounting-Response arrived, done(err) otherwise. Later calls
// are ignored.
//
// A record is deleted only after its done(nil), in a transaction shared with
// the other successes at hand; its window slot frees once the delete is
// committed, so at most window records are ever sent but not yet deleted
// (the duplicate bound after a crash, docs/spool.md). Records appended
// while Replay runs are replayed too: Replay returns nil when the spool is
// empty.
//
// The first done(err) stops the replay: no new record is sent, the
// outstanding ones are waited for (those that succeed are deleted), and
// Replay returns the error wrapped with the record's seq. The failed record
// stays first in line for the next call. Cancelling ctx stops it the same
// way and returns ctx.Err(). Replay always waits for every outstanding done
// before it returns, so send must bound its own wait. replayed counts the
// records deleted by this call. Only one Replay runs at a time
// (ErrReplayRunning).
func (s *Spool) Replay(ctx context.Context, window int, send func(e Entry, delay time.Duration, done func(error))) (replayed int, err error) {
	if window < 1 || window > MaxWindow {
		return 0, fmt.Errorf("%w: %d, want 1..%d", ErrBadWindow, window, MaxWindow)
	}
	if send == nil {
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

	// results never blocks a done: at most window are outstanding.
	results := make(chan replayResult, window)
	var (
		buf         []Entry // records read ahead, in order
		after       uint64  // highest seq handed to send
		outstanding int
		stopErr     error
	)
	for {
		for stopErr == nil && outstanding < window {
			if err := ctx.Err(); err != nil {
				stopErr = err
				break
			}
			if len(buf) == 0 {
				var err error
				if buf, err = s.readAfter(after, readChunk); err != nil {
					stopErr = err
					break
				}
				if len(buf) == 0 {
					break // drained
				}
			}
			e := buf[0]
			buf = buf[1:]
			after = e.Seq
			outstanding++
			var fired atomic.Bool
			seq := e.Seq
			send(e, max(s.now().Sub(e.Received), 0), func(err error) {
				if fired.CompareAndSwap(false, true) {
					results <- replayResult{seq: seq, err: err}
				}
			})
		}
		if outstanding == 0 {
			return replayed, stopErr
		}
		got := make([]replayResult, 0, outstanding)
		if stopErr == nil {
			select {
			case r := <-results:
				got = append(got, r)
			case <-ctx.Done():
				stopErr = ctx.Err()
				continue
			}
		} else {
			got = append(got, <-results)
		}
	drain:
		for len(got) < outstanding {
			select {
			case r := <-results:
				got = append(got, r)
			default:
				break drain
			}
		}
		ok := make([]uint64, 0, len(got))
		for _, r := range got {
			if r.err == nil {
				ok = append(ok, r.seq)
			} else if stopErr == nil {
				stopErr = fmt.Errorf("spool: replay seq %d: %w", r.seq, r.err)
			}
		}
		if len(ok) > 0 {
			if err := s.deleteRecords(ok); err != nil {
				// The records stay and will be sent again: a failed
				// delete is a duplicate, never a loss.
				if stopErr == nil {
					stopErr = err
				}
				s.log.Error("spool delete failed", "err", err)
			} else {
				replayed += len(ok)
			}
		}
		outstanding -= len(got)
	}
}

// readAfter returns up to n decodable records with seq > after, in order.
// Records that do not decode are moved to the quarantine bucket (logged and
// counted) and skipped: sending garbage upstream helps nobody, and
// deleting them would lose what an operator might still recover.
func (s *Spool) readAfter(after uint64, n int) ([]Entry, error) {
	for {
		var out []Entry
		var bad []uint64
		var badErr error
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
				if len(k) != keyLen {
					continue // not written by this package; never sent
				}
				seq := binary.BigEndian.Uint64(k)
				e, err := decodeRecord(seq, v)
				if err != nil {
					bad = append(bad, seq)
					badErr = err
					continue
				}
				out = append(out, e)
			}
			return nil
		})
		if err != nil {
			if errors.Is(err, bolt.ErrDatabaseNotOpen) {
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
		s.log.Error("spool record quarantined", "id", bad[0], "err", badErr)
		// Read again: the chunk may now hold fewer than n good records.
	}
}

// deleteRecords removes the records seqs in one transaction (one fsync) and
// keeps the counters.
func (s *Spool) deleteRecords(seqs []uint64) error {
	return s.removeRecords(seqs, nil)
}

// quarantine moves the records seqs to the quarantine bucket.
func (s *Spool) quarantine(seqs []uint64) error {
	if err := s.removeRecords(seqs, bucketQuarantine); err != nil {
		return err
	}
	s.quarantined.Add(uint64(len(seqs)))
	return nil
}

// removeRecords deletes the records seqs, first copying them to the bucket
// moveTo when it is not nil.
func (s *Spool) removeRecords(seqs []uint64, moveTo []byte) error {
	var delta meta
	err := s.db.Update(func(tx *bolt.Tx) error {
		delta = meta{}
		recs, mb := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
		for _, seq := range seqs {
			k := seqKey(seq)
			v := recs.Get(k)
			if v == nil {
				continue
			}
			if moveTo != nil {
				if err := tx.Bucket(moveTo).Put(k, append([]byte(nil), v...)); err != nil {
					return err
				}
			}
			delta.count--
			delta.bytes -= int64(keyLen + len(v))
			if err := recs.Delete(k); err != nil {
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
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("spool: delete: %w", err)
	}
	s.mu.Lock()
	s.count += int(delta.count)
	s.bytes += delta.bytes
	s.mu.Unlock()
	if moveTo == nil {
		s.replayed.Add(uint64(-delta.count))
	}
	return nil
}
