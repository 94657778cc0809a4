// Package control owns mxedge's control socket: an HTTP/1.1 API served on a
// unix socket under the runtime directory (default /run/mxedge/control.sock,
// mode 0660, group mxedge) and the client the CLI uses to reach it.
//
// The socket exists because the daemon holds bbolt's exclusive file lock on
// the cache for its whole lifetime: a second process cannot even open the
// file read-only (bbolt's shared flock conflicts), so `mxedge cache ...`
// must ask the daemon. Access control is the socket file's mode and group;
// there is no TCP listener.
//
// Endpoints (all under /v1/, errors as {"error": "..."} with a 4xx/5xx
// status):
//
//	GET  /v1/status                 the daemon's status (Options.Status)
//	GET  /v1/events?n=N&follow=1    the last N NAC events (default 100), JSON Lines; with follow, then
//	                                every new one, with a heartbeat newline each second
//	GET  /v1/clients                NAS clients with their counters (NASClient)
//	POST /v1/coa?action=A&mac=M&session=S&user=U&ip=I&nas=N
//	                                an operator's CoA or Disconnect (CoAResult), with heartbeats
//	GET  /v1/cache/stats            cache.Stats
//	GET  /v1/cache/list?limit=N     unexpired records, JSON Lines, key order
//	GET  /v1/cache/show?key=K       one record by MAC (any notation) or identity; 404 if none
//	POST /v1/cache/delete?key=K     {"removed": bool}
//	POST /v1/cache/purge-expired    {"removed": N}, with heartbeats (below)
//	GET  /v1/cache/export           JSON Lines, exactly cache.Store.Export
//	POST /v1/cache/import?merge=newer  body JSON Lines (at most MaxImportBytes); the import report
//
// Records use the cache's JSON Lines schema (docs/cache.md), so list, show
// --json and export print the same objects and any of them can be imported.
//
// Liveness: the client gives up when the connection makes no progress for
// Client.Timeout (5 s): a daemon that accepts but never answers yields
// ErrTimeout rather than a hang. Streams (list, export, an import upload)
// make progress continuously; purge-expired, which can run for a minute on
// a million expired entries, sends its 200 header at once and a newline
// every second until its JSON result (JSON decoders skip the whitespace),
// so a failure during purge is reported in the body, not the status.
package control
