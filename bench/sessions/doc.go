// Package sessions owns the session table's benchmark (sessions_test.go): 100,000 concurrent
// sessions in cache/session, accounting updates applied at a paced 2,000 per second in the
// writer's batch shape (one transaction per 10 ms of arrivals), and lookups by every key the CoA
// relay and the identity push use, timed one by one while the updates flow. Its reference, measured
// in the same run on the same machine, is the client cache's LookupMAC (cache) over 100,000
// entries: the lookups are reported as ratios to it, never as absolute timings in a test.
//
// The request path's share (the tracker's copy and non-blocking send) is measured separately by
// edge's BenchmarkSessionObserve.
package sessions
