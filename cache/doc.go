// Package cache owns the persistent store of clients the cloud NAC has
// authorized: a bbolt database of Records keyed by normalized MAC address (or
// by identity for clients seen without a MAC), an identity index, and an
// expiry index that a background sweeper walks in bounded transactions. It
// is what lets mxedge keep giving the cloud's last answer while the WAN is
// down (docs/cache.md: TTL 1 to 30 days, default 7, persistent across
// restarts, automatic cleanup at expiry).
//
// Writes from the request path (Learn, Forget) never block: they go to a
// bounded in-memory queue that a writer goroutine started by Run commits in
// batches, so a burst of Access-Accepts does not serialize the proxy on
// fsync. A crash loses at most the operations accepted since the last
// commit, which the writer keeps to one batch (BatchSize operations or
// BatchDelay of arrivals, whichever comes first) while it keeps up; the
// bbolt file itself is never corrupted (copy-on-write pages, meta page
// switched last).
//
// Attributes are opaque here: the cache stores the ones it is given. Which
// reply attributes may be stored and replayed (never per-session material
// such as MS-MPPE keys, EAP-Message, State, Class) is survivability's policy,
// survivability.Replayable.
//
// It is a leaf package: it imports no other mxedge package. The key scheme,
// learning rules and JSON Lines format are documented in docs/cache.md.
package cache
