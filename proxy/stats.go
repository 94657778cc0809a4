package proxy

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DropReason says why a datagram or frame was dropped without an answer.
type DropReason uint8

const (
	DropUnknownClient DropReason = iota
	DropMalformed
	DropWrongCode
	DropBadAuthenticator
	DropMissingMA
	DropProxyStateWithoutMA
	DropStatusWithoutMA
	DropDuplicate
	DropBadReply
	DropSendFailed      // the kernel refused to send an answer
	DropUpstreamTimeout // the upstream left it unanswered past its budget while its connection was up
	dropReasons
)

var dropNames = [dropReasons]string{
	"unknown-client", "malformed", "wrong-code", "bad-authenticator", "missing-message-authenticator",
	"proxy-state-without-message-authenticator", "status-server-without-message-authenticator",
	"duplicate-in-flight", "bad-upstream-reply", "send-failed",
	"upstream-timeout",
}

func (r DropReason) String() string {
	if r < dropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, for metrics.
func DropReasons() []DropReason {
	rs := make([]DropReason, dropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// Stats are the request path's counters. They are plain atomics so the hot path pays nothing for
// them; the metrics exporter reads them on scrape.
type Stats struct {
	Received          atomic.Uint64
	Forwarded         atomic.Uint64
	UpstreamAnswered  atomic.Uint64
	DuplicateAnswered atomic.Uint64
	StatusServer      atomic.Uint64
	Fallback          atomic.Uint64 // requests handed to the Fallback
	NoUpstream        atomic.Uint64 // requests no upstream answered (before the Fallback)
	Retried           atomic.Uint64 // requests re-sent to another upstream after a connection died
	Dropped           [dropReasons]atomic.Uint64
}

// logLimiter lets one line per reason through per interval and says how many were suppressed.
type logLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	last     map[string]time.Time
	skipped  map[string]int
}

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, last: map[string]time.Time{}, skipped: map[string]int{}}
}

// log emits msg at level unless a line with the same key was logged within the interval.
func (l *logLimiter) log(lg *slog.Logger, level slog.Level, key, msg string, now time.Time, args ...any) {
	l.mu.Lock()
	if now.Sub(l.last[key]) < l.interval {
		l.skipped[key]++
		l.mu.Unlock()
		return
	}
	l.last[key] = now
	n := l.skipped[key]
	l.skipped[key] = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	lg.Log(context.Background(), level, msg, args...)
}
