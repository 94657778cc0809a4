package proxy

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DropReason says why a datagram, frame or request was dropped without an answer.
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
	DropSendFailed // the kernel refused to send an answer
	// DropMalformedEAP: the EAP-Message attributes do not form one well-framed EAP packet
	// (RFC 3579 §3.1, RFC 3748 §4); forwarded, it would cost an upstream conversation.
	DropMalformedEAP
	// DropEAPWithoutMA: EAP-Message without Message-Authenticator, which RFC 3579 §3.2 says to
	// discard silently, whatever require_message_authenticator says.
	DropEAPWithoutMA
	// DropTooManyAttributes: more attributes than an upstream accepts (packet.MaxAttrs).
	DropTooManyAttributes
	// DropTooLongToForward: the request is within 4096 octets but its forwarded copy would not be
	// (see Server.forwardLen), so it is refused rather than acknowledged and never delivered.
	DropTooLongToForward
	// DropUnanswered: a Handler left a request unanswered on purpose (Request.Reply(nil)).
	DropUnanswered
	DropPeerInFlight    // a RadSec peer already had its limit of requests waiting for an answer
	DropUpstreamTimeout // the upstream left it unanswered past its budget while its connection was up
	dropReasons
)

var dropNames = [dropReasons]string{
	"unknown-client", "malformed", "wrong-code", "bad-authenticator", "missing-message-authenticator",
	"proxy-state-without-message-authenticator", "status-server-without-message-authenticator",
	"duplicate-in-flight", "bad-upstream-reply", "send-failed", "malformed-eap",
	"eap-without-message-authenticator", "too-many-attributes", "too-long-to-forward", "unanswered",
	"radsec-peer-in-flight-limit", "upstream-timeout",
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
	// DuplicateEvicted counts duplicate-cache entries pushed out by newer requests before their
	// window was over (ServerOptions.DuplicateCacheSize too small for the rate).
	DuplicateEvicted atomic.Uint64
	StatusServer     atomic.Uint64
	Fallback         atomic.Uint64 // requests handed to the Fallback
	NoUpstream       atomic.Uint64 // requests no upstream answered (before the Fallback)
	Retried          atomic.Uint64 // requests re-sent to another upstream after a connection died
	// ExtraAnswers counts Reply or Drop calls on a request already answered or dropped: each is a
	// bug in a Handler, and was discarded.
	ExtraAnswers atomic.Uint64
	Dropped      [dropReasons]atomic.Uint64
	// AccessAnswerTime and AccountingAnswerTime: from receiving a request to handing its answer to
	// the transport (Request.Reply), the NAS-facing answer time.
	AccessAnswerTime, AccountingAnswerTime Histogram
}

// logLimiter bounds what a flood of events can log: per key (a drop reason, or a router outcome)
// it lets through the first line of each interval, and within the interval one more line for each
// of up to maxSources distinct sources (so two misconfigured NASes are both named). Everything else
// is counted, and the key's next line says how many were suppressed. The state per key is reset at
// each interval, so its memory is bounded by the number of keys, whatever the number of sources
// (spoofed source addresses cost nothing).
type logLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	keys     map[string]*limitWindow
}

// maxSources is how many distinct sources one key may name per interval.
const maxSources = 8

type limitWindow struct {
	start   time.Time
	sources []string // sources logged in this window
	skipped int      // lines suppressed since the key's last line
}

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, keys: map[string]*limitWindow{}}
}

// log emits msg at level unless a line with the same key was logged within the interval.
func (l *logLimiter) log(lg *slog.Logger, level slog.Level, key, msg string, now time.Time, args ...any) {
	l.logFrom(lg, level, key, "", msg, now, args...)
}

// logFrom is log for an event from source: a source not yet named in the key's current interval
// gets its line while fewer than maxSources have been.
func (l *logLimiter) logFrom(lg *slog.Logger, level slog.Level, key, source, msg string, now time.Time, args ...any) {
	l.mu.Lock()
	w, ok := l.keys[key]
	switch {
	case !ok:
		w = &limitWindow{start: now}
		l.keys[key] = w
	case now.Sub(w.start) >= l.interval:
		w.start, w.sources = now, w.sources[:0]
	case source == "" || len(w.sources) >= maxSources || slices.Contains(w.sources, source):
		w.skipped++
		l.mu.Unlock()
		return
	}
	w.sources = append(w.sources, source)
	n := w.skipped
	w.skipped = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	lg.Log(context.Background(), level, msg, args...)
}
