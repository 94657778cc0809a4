// Package survival owns the survivability benchmarks: local MAB answers from the cache at a paced,
// open-loop offered rate, and full local EAP-TLS authentications compared with FreeRADIUS 3.2's
// EAP-TLS under the same Go load generator (targets in report.go, figures in docs/performance.md).
//
// mxedge runs as a child process (the binary `make build` produces) in survivability mode: its
// only upstream is a closed loopback port, so it declares the cloud unreachable and answers every
// request locally. Server CPU is read from /proc/PID/stat (proc(5)) before and after each window,
// so the figures are per answer and include every thread of the server process.
//
// The load generators live in this (benchmark) process. They bound every loop by a request count
// and a deadline, check every reply (Response Authenticator, RFC 2865 §3; Message-Authenticator,
// RFC 3579 §3.2) and count anything unexpected as an error rather than an answer.
package survival
