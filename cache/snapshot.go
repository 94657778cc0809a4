package cache

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteSnapshot writes a consistent copy of the whole database file from one read transaction
// (bbolt Tx.WriteTo), while writers carry on: every write committed before the transaction began
// is in the copy, none after it. start gets the copy's exact size before the first byte and returns
// where it goes (a backup sets Content-Length from it, so a cut stream is detected).
func (s *Store) WriteSnapshot(start func(size int64) (io.Writer, error)) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
