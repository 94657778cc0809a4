package session

import "errors"

// Store errors. Callers test them with errors.Is.
var (
	// ErrBadRecord: a record fails validation or an encoded record cannot be decoded.
	ErrBadRecord = errors.New("session: bad record")
	// ErrUnknownVersion: an encoded record or the file carries a version this binary does not
	// know (written by a newer mxedge).
	ErrUnknownVersion = errors.New("session: unknown record version")
	// ErrLocked: another process holds the database file lock (the daemon, while it runs).
	ErrLocked = errors.New("session: database is locked by another process")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("session: store is closed")
	// ErrReadOnly: a write was attempted on a store opened read-only.
	ErrReadOnly = errors.New("session: store is read-only")
	// ErrBadOptions: Options.Validate failed; the message names the field and its range.
	ErrBadOptions = errors.New("session: bad options")
	// ErrNotFound: no session has the given ID.
	ErrNotFound = errors.New("session: no such session")
	// ErrBadQuery: a query field cannot be understood (a MAC or IP that does not parse).
	ErrBadQuery = errors.New("session: bad query")
)
