// Package session owns the session table: every client session the edge has seen, from the
// Access-Accept that admitted it (who decided: the cloud, the cache, a default VLAN or the edge's
// own policy) joined with the accounting that followed (RFC 2866 Start, Interim-Update, Stop;
// Acct-Session-Id, Framed addresses, octets, terminate cause).
//
// Records live in their own bbolt file beside the client cache (sessions.db), with secondary
// indexes by Acct-Session-Id (scoped by NAS), MAC, User-Name, Framed-IP (v4 and v6), NAS+port and
// NAS, so a CoA/Disconnect or an identity push finds a session in one index seek. The table is
// bounded (Options.MaxEntries, evicting the oldest ended session first, then the live session
// nearest its missed-interim deadline), expires a session StopGrace after its Stop or after
// MissedInterims interim intervals without a word, and survives restarts.
//
// The store is synchronous and owns no request-path goroutine: its one writer (edge's tracker)
// calls Apply with a batch of updates, committed in one transaction, and every change is then told
// to the Observer. Sessions admitted locally while the cloud was unreachable are marked
// ReconcileNeeded until the cloud re-authorizes them (docs/sessions.md).
//
// It is a leaf package: it imports no other mxedge package.
package session
