package spool

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteSnapshot writes a consistent copy of the spool file from one read transaction (bbolt
// Tx.WriteTo) while appends and replay carry on: every record acknowledged (committed) before the
// transaction began is in the copy. start gets the copy's exact size before the first byte.
func (s *Spool) WriteSnapshot(start func(size int64) (io.Writer, error)) (int64, error) {
	if !s.enter() {
		return 0, ErrClosed
	}
	defer s.active.Done()
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
