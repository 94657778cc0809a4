package session

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteSnapshot writes a consistent copy of the database file (`mxedge backup` through the
// control socket, as cache.Store.WriteSnapshot): start is called with the copy's exact size and
// returns where to write it.
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
