package survivability

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// Decider says who made an access decision.
type Decider uint8

const (
	DeciderCloud    Decider = iota // the cloud NAC, through a RadSec upstream (the Learner's events)
	DeciderCache                   // locally, with the client's cached authorization (cache-hit)
	DeciderDefault                 // locally, for a client not in the cache: default VLAN or failmode closed
	DeciderPolicy                  // locally, by the edge's rules: a method not served locally, a failed EAP-TLS authentication
	DeciderExternal                // a server of a route's pool other than the cloud (SourceExternal)
	DeciderRoute                   // a route's own Access-Reject: a reject route, a loop (SourceRoute)
	deciders
)

var deciderNames = [deciders]string{"cloud", "cache", "default", "policy", "external", "route"}

func (d Decider) String() string {
	if d < deciders {
		return deciderNames[d]
	}
	return "unknown"
}

// decisionMethods are the methods of access decisions, indexed by methodIndex.
var decisionMethods = [...]string{"mab", "eap-tls", "eap", "pap", "chap", "other"}

func methodIndex(m string) int {
	switch m {
	case "mab":
		return 0
	case "eap-tls":
		return 1
	case "eap":
		return 2
	case "pap":
		return 3
	case "chap":
		return 4
	}
	return 5
}

// DecisionStats counts every decision exactly, on the goroutine that makes it: Count is called
// with the decision's Event where it is made (the Engine's, localeap's and the Learner's Events
// callback runs on the request path), before the answer leaves. It never depends on an event
// subscriber keeping up. Access decisions are fixed arrays of atomics; local decisions and
// accounting are keyed by reason, a small set of constant strings, so their maps stop growing
// after the first of each.
type DecisionStats struct {
	access [len(decisionMethods)][2][deciders]atomic.Uint64 // [method][allowed][decider]

	mu    sync.RWMutex
	local map[localKey]*atomic.Uint64
	acct  map[string]*atomic.Uint64
}

type localKey struct {
	method, reason string
	allowed        bool
}

// NewDecisionStats returns zeroed counters.
func NewDecisionStats() *DecisionStats {
	return &DecisionStats{local: map[localKey]*atomic.Uint64{}, acct: map[string]*atomic.Uint64{}}
}

// Count counts one decision. An Accounting-Request handled locally counts as accounting by its
// reason (spooled, spool-full, …), never as an access decision. A local EAP-TLS conversation that
// timed out counts as a policy reject with reason timeout.
func (s *DecisionStats) Count(ev Event) {
	if ev.Method == "accounting" {
		counter(s, s.acct, ev.Reason).Add(1)
		return
	}
	allowed := 0
	if ev.Allowed {
		allowed = 1
	}
	d := DeciderOf(ev)
	if !Unanswered(ev.Reason) { // nothing was sent: not an Accept or a Reject
		s.access[methodIndex(ev.Method)][allowed][d].Add(1)
	}
	if ev.Source == SourceLocal {
		counter(s, s.local, localKey{method: ev.Method, reason: ev.Reason, allowed: ev.Allowed}).Add(1)
	}
}

// DeciderOf says who made the access decision ev: the cloud for the Learner's events, a route's
// pool or the route itself for RouteEvent's, else by the local reason.
func DeciderOf(ev Event) Decider {
	switch ev.Source {
	case SourceLocal:
	case SourceExternal:
		return DeciderExternal
	case SourceRoute:
		return DeciderRoute
	default:
		return DeciderCloud
	}
	switch ev.Reason {
	case "cache-hit":
		return DeciderCache
	case "default-vlan", "failmode-closed":
		return DeciderDefault
	}
	return DeciderPolicy
}

// counter finds or adds the counter for k.
func counter[K comparable](s *DecisionStats, m map[K]*atomic.Uint64, k K) *atomic.Uint64 {
	s.mu.RLock()
	c := m[k]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = m[k]; c == nil {
		c = new(atomic.Uint64)
		m[k] = c
	}
	return c
}

// AccessCount is one access decision series.
type AccessCount struct {
	Code    string // accept, reject
	Method  string // mab, eap-tls, eap, pap, chap, other
	Decider Decider
	Count   uint64
}

// LocalCount is one local decision series.
type LocalCount struct {
	Method, Reason string
	Allowed        bool
	Count          uint64
}

// Access returns every access decision series, zero ones included, so each appears from the first
// scrape.
func (s *DecisionStats) Access() []AccessCount {
	out := make([]AccessCount, 0, len(decisionMethods)*2*int(deciders))
	for m, name := range decisionMethods {
		for a, code := range [2]string{"reject", "accept"} {
			for d := range deciders {
				out = append(out, AccessCount{Code: code, Method: name, Decider: d, Count: s.access[m][a][d].Load()})
			}
		}
	}
	return out
}

// Local returns the local decision series seen so far, sorted.
func (s *DecisionStats) Local() []LocalCount {
	s.mu.RLock()
	out := make([]LocalCount, 0, len(s.local))
	for k, c := range s.local {
		out = append(out, LocalCount{Method: k.method, Reason: k.reason, Allowed: k.allowed, Count: c.Load()})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b LocalCount) int {
		switch {
		case a.Method != b.Method:
			return cmp.Compare(a.Method, b.Method)
		case a.Reason != b.Reason:
			return cmp.Compare(a.Reason, b.Reason)
		case a.Allowed != b.Allowed:
			if a.Allowed {
				return 1
			}
			return -1
		}
		return 0
	})
	return out
}

// Accounting returns the local accounting counts by reason.
func (s *DecisionStats) Accounting() map[string]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]uint64, len(s.acct))
	for r, c := range s.acct {
		out[r] = c.Load()
	}
	return out
}
