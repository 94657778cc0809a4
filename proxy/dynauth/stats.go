package dynauth

import (
	"sync"
	"sync/atomic"
)

// DropReason says why a Dynamic Authorization datagram was dropped without an answer.
type DropReason uint8

const (
	DropUnknownClient DropReason = iota
	DropMalformed
	DropWrongCode // not a CoA-Request or Disconnect-Request
	DropBadAuthenticator
	DropMissingMA           // require_message_authenticator and none (BlastRADIUS)
	DropProxyStateWithoutMA // limit_proxy_state
	DropDuplicate           // a retransmission of a request still being relayed
	DropBadNASReply         // a NAS's answer that matched nothing or did not verify
	dropReasons
)

var dropNames = [dropReasons]string{
	"unknown-client", "malformed", "wrong-code", "bad-authenticator", "missing-message-authenticator",
	"proxy-state-without-message-authenticator", "duplicate-in-flight", "bad-nas-reply",
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

// Error-Cause values mxedge sends (RFC 5176 §3.6).
const (
	CauseRequestNotRoutable    uint32 = 502
	CauseSessionNotFound       uint32 = 503
	CauseResourcesUnavailable  uint32 = 506
	CauseMissingAttribute      uint32 = 402
	CauseNASIdentificationMism uint32 = 403
)

// Stats are the relay's counters, read at scrape time.
type Stats struct {
	Requests          atomic.Uint64 // accepted for relaying (after every check)
	ACK               atomic.Uint64 // ACKs relayed back
	Timeouts          atomic.Uint64 // NAS did not answer the retransmissions (answered 506)
	Retransmissions   atomic.Uint64 // sent again to a NAS
	DuplicateAnswered atomic.Uint64 // a retransmission answered from the duplicate cache
	Dropped           [dropReasons]atomic.Uint64

	mu    sync.Mutex
	naks  map[uint32]uint64 // by Error-Cause, 0 for a NAK without one
	byNAS map[string]*NASStats
}

// NASStats count what was relayed to one NAS.
type NASStats struct {
	Requests atomic.Uint64
	ACK      atomic.Uint64
	NAK      atomic.Uint64
	Timeouts atomic.Uint64
}

func (s *Stats) nak(cause uint32) {
	s.mu.Lock()
	if s.naks == nil {
		s.naks = map[uint32]uint64{}
	}
	s.naks[cause]++
	s.mu.Unlock()
}

// NAKs returns the NAKs sent back by Error-Cause (0: none), relayed and generated alike.
func (s *Stats) NAKs() map[uint32]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint32]uint64, len(s.naks))
	for k, v := range s.naks {
		out[k] = v
	}
	return out
}

// NAS returns the counters of one NAS, creating them.
func (s *Stats) NAS(name string) *NASStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byNAS == nil {
		s.byNAS = map[string]*NASStats{}
	}
	n := s.byNAS[name]
	if n == nil {
		n = new(NASStats)
		s.byNAS[name] = n
	}
	return n
}

// NASes returns every NAS's counters by name.
func (s *Stats) NASes() map[string]*NASStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*NASStats, len(s.byNAS))
	for k, v := range s.byNAS {
		out[k] = v
	}
	return out
}
