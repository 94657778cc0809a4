// Package spool owns the durable queue of Accounting-Requests that mxedge
// acknowledged while the cloud NAC was unreachable, and their replay, in
// arrival order, once it is reachable again.
//
// RFC 2866 §2 lets a NAS forget an Accounting-Request only once it has an
// Accounting-Response. mxedge therefore answers a NAS during an outage only
// after Append has returned nil, that is after the record is in a bbolt
// transaction that has been fsync'd: a power cut or kill -9 right after the
// Accounting-Response loses nothing. Concurrent Appends are group-committed
// (one transaction and one fsync for every caller waiting at that moment),
// so a burst of Interim-Updates does not serialize on the disk.
//
// The spool is bounded (Options.MaxRecords, Options.MaxBytes). When it is
// full Append returns ErrFull and the caller does not answer the NAS, which
// keeps the record and retransmits it (RFC 2866 §2, RFC 5080 §2.2.1): a
// record is refused, logged and counted, never silently dropped.
//
// Replay hands records to the caller in sequence order, a bounded window at
// a time, and deletes each one only after the caller reports its
// Accounting-Response. With an ordering key (ReplayWith, the session), a
// key's records go one at a time, the next only after the previous one's
// delete, while different keys replay in parallel. A record the caller
// reports as never deliverable (ErrPermanent) is moved to a quarantine
// bucket with its reason, not retried. AddDelay rewrites Acct-Delay-Time
// (RFC 2866 §5.2) by the time a record spent in the spool.
//
// The Spool has no goroutines of its own (the committer is whichever Append
// caller leads the group), so it has no Run; Close waits for callers in
// flight. It is a leaf package: it imports no other mxedge package. The
// file layout, ordering and duplicate bounds are documented in
// docs/spool.md.
package spool
