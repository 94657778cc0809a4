package spool

import "errors"

// Spool errors. Callers test them with errors.Is.
var (
	// ErrFull: the spool holds Options.MaxRecords records or adding this
	// one would pass Options.MaxBytes. The record was not stored: do not
	// answer the NAS, so that it keeps the record and retransmits.
	ErrFull = errors.New("spool: full")
	// ErrClosed: the spool has been closed.
	ErrClosed = errors.New("spool: closed")
	// ErrLocked: another process holds the database file lock and it was
	// not released within Options.OpenTimeout.
	ErrLocked = errors.New("spool: database is locked by another process")
	// ErrBadOptions: Options.Validate failed; the wrapped message names the
	// field and its allowed range.
	ErrBadOptions = errors.New("spool: bad options")
	// ErrBadEntry: Append was given an entry that cannot be stored (its
	// Packet is not a well-formed Accounting-Request, a name is too long).
	ErrBadEntry = errors.New("spool: bad entry")
	// ErrBadPacket: AddDelay was given a packet that is not a well-formed
	// Accounting-Request or that cannot take the attribute.
	ErrBadPacket = errors.New("spool: bad accounting-request")
	// ErrBadRecord: a stored record cannot be decoded. Replay moves such
	// a record to the quarantine bucket instead of sending it.
	ErrBadRecord = errors.New("spool: bad record")
	// ErrUnknownVersion: the file or a record was written by a newer
	// mxedge with a layout this binary does not know.
	ErrUnknownVersion = errors.New("spool: unknown version")
	// ErrReplayRunning: Replay was called while another Replay is running.
	// One replay at a time is what keeps the order and the duplicate
	// bound.
	ErrReplayRunning = errors.New("spool: replay already running")
	// ErrPermanent: wrapped by a replay send's done error when the record
	// can never be delivered (it cannot be forwarded within 4096 octets,
	// it does not parse): Replay quarantines it instead of retrying it.
	ErrPermanent = errors.New("spool: record can never be delivered")
	// ErrBadWindow: Replay was given a window outside 1..MaxWindow.
	ErrBadWindow = errors.New("spool: bad replay window")
)
