// Package identity pushes each session's connection state to identity services: a `connect` when a
// session gets an address, an `update` when the address changes or a live session re-authenticates
// (the rekey case), a `disconnect` when it stops or expires, with the user, the domain, the
// addresses and the session's context (docs/identity.md). Each sink (JSON over HTTPS, RFC 5424
// syslog over UDP, TCP or TLS, a copy of the accounting to another RADIUS server) has its own
// durable bbolt queue and delivery loop with capped backoff, so a slow or dead sink never slows the
// request path or another sink. It owns the event model, domain derivation, the queues, the sink
// drivers and their counters; it learns sessions from what edge hands it.
package identity
