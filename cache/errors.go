package cache

import "errors"

// Store errors. Callers test them with errors.Is.
var (
	// ErrBadMAC: the string is not a 48-bit MAC address in one of the
	// accepted notations (see NormalizeMAC).
	ErrBadMAC = errors.New("cache: bad mac address")
	// ErrBadRecord: a record fails validation (no key, oversized field,
	// bad attribute) or an encoded record cannot be decoded.
	ErrBadRecord = errors.New("cache: bad record")
	// ErrUnknownVersion: an encoded record carries a codec version this
	// binary does not know (written by a newer mxedge).
	ErrUnknownVersion = errors.New("cache: unknown record version")
	// ErrLocked: another process holds the database file lock and it was
	// not released within Options.OpenTimeout. The daemon holds it while
	// it runs; the CLI should go through the daemon or say so.
	ErrLocked = errors.New("cache: database is locked by another process")
	// ErrReadOnly: a write was attempted on a store opened read-only.
	ErrReadOnly = errors.New("cache: store is read-only")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("cache: store is closed")
	// ErrExpired: Upsert or Import was given a record whose expiry is not
	// in the future.
	ErrExpired = errors.New("cache: record already expired")
	// ErrBadOptions: Options.Validate failed; the wrapped message names the
	// field and its allowed range.
	ErrBadOptions = errors.New("cache: bad options")
	// ErrFull: the store holds Options.MaxEntries records and none may be
	// evicted for the new one (every candidate was confirmed within
	// Options.Protect, or later than the new record).
	ErrFull = errors.New("cache: full")
)
