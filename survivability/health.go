package survivability

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is the edge's view of the cloud NAC.
type Mode int32

const (
	// ModeUp: an upstream answers; requests go to the cloud.
	ModeUp Mode = iota
	// ModeSuspect: requests timed out although an upstream connection is up; still forwarding.
	ModeSuspect
	// ModeDown: no upstream can answer; requests are answered locally.
	ModeDown
	// ModeRecovering: an upstream is back after the link flapped (the last failback did not hold),
	// and has not yet answered enough consecutive Status-Server probes; still answering locally so a
	// flapping link does not flap the mode.
	ModeRecovering
)

func (m Mode) String() string {
	switch m {
	case ModeSuspect:
		return "suspect"
	case ModeDown:
		return "down"
	case ModeRecovering:
		return "recovering"
	}
	return "up"
}

// DefaultFailbackProbes is HealthOptions.FailbackProbes when unset.
const DefaultFailbackProbes = 3

// HealthOptions tune the state machine.
type HealthOptions struct {
	// FailbackProbes is the hold-down after a flap: how many consecutive Status-Server answers an
	// upstream must give after it reconnects before requests go back to the cloud. It applies only
	// when the link flapped: the last failback did not hold for StableAfter. It doubles with every
	// further flap (capped at 16 times). After an outage that followed a stable period there is no
	// hold-down: the connection that brings the upstream back has answered a Status-Server already.
	// Default 3 (3 s at the default 1 s interval).
	FailbackProbes int
	// StableAfter is how long the cloud must stay reachable after a failback for the next outage
	// to count as a new outage rather than a flap. Default 5s.
	StableAfter time.Duration
	// FlapWindow: flaps older than this are forgotten. Default 60s.
	FlapWindow time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// OnChange observes every transition (metrics, sd_notify status).
	OnChange func(from, to Mode, reason string)
}

// Validate checks the options before anything is built.
func (o *HealthOptions) Validate() error {
	switch {
	case o.FailbackProbes < 0 || o.FailbackProbes > 100:
		return fmt.Errorf("survivability: failback probes %d outside 0..100", o.FailbackProbes)
	case o.StableAfter < 0 || o.FlapWindow < 0:
		return errors.New("survivability: negative flap timing")
	}
	return nil
}

// Health turns upstream connection events into the edge's mode:
//
//	up --timeouts--> suspect --answer--> up
//	up|suspect --no upstream up--> down
//	down --an upstream reconnects, the last failback held for StableAfter--> up
//	down --an upstream reconnects after a flap--> recovering
//	recovering --hold-down probes answered--> up;  recovering --upstream lost--> down
//
// The pool detects a dead upstream within status_interval+dead_after (3 s by default, also when the
// link is blackholed), so down follows within that time. Every transition is logged at Warn with its
// reason and counted.
type Health struct {
	opts  HealthOptions
	mode  atomic.Int32
	mu    sync.Mutex
	up    map[string]bool // the upstreams of the pool in use (Upstreams resets it on reload)
	since time.Time
	good  int // consecutive answered probes while recovering
	need  int // probes the current recovery needs
	// A flap is an outage that began less than StableAfter after a failback, or during a recovery:
	// the failback did not hold. flaps counts them in a row; a stable failback resets it.
	flaps      int
	lastFlap   time.Time
	failedBack bool      // the current ModeUp began with a failback (not at start)
	upSince    time.Time // when the current ModeUp began

	transitions [4]atomic.Uint64 // by target mode
}

// NewHealth returns a state machine in ModeUp.
func NewHealth(o HealthOptions) *Health {
	if o.FailbackProbes <= 0 {
		o.FailbackProbes = DefaultFailbackProbes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FlapWindow <= 0 {
		o.FlapWindow = time.Minute
	}
	if o.StableAfter <= 0 {
		o.StableAfter = 5 * time.Second
	}
	now := o.Now()
	return &Health{opts: o, up: map[string]bool{}, since: now, upSince: now}
}

// Mode returns the current mode.
func (h *Health) Mode() Mode { return Mode(h.mode.Load()) }

// Local reports whether requests are answered locally (down or recovering).
func (h *Health) Local() bool {
	m := h.Mode()
	return m == ModeDown || m == ModeRecovering
}

// Since returns when the current mode began.
func (h *Health) Since() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.since
}

// Transitions returns how many times the mode changed into m.
func (h *Health) Transitions(m Mode) uint64 { return h.transitions[m].Load() }

// UpstreamUp records that an upstream connection is carrying traffic (or just passed its first
// Status-Server, after a reconnect).
func (h *Health) UpstreamUp(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up[name] = true
	h.upLocked(name)
}

func (h *Health) upLocked(name string) {
	switch h.Mode() {
	case ModeDown:
		if h.flaps > 0 && h.opts.Now().Sub(h.lastFlap) > h.opts.FlapWindow {
			h.flaps = 0
		}
		if h.flaps == 0 {
			h.set(ModeUp, "upstream "+name+" reconnected and answered Status-Server")
			return
		}
		h.good = 0
		h.need = h.opts.FailbackProbes << min(h.flaps-1, 4)
		h.set(ModeRecovering, "upstream "+name+" reconnected after a flap")
	case ModeSuspect:
		h.set(ModeUp, "upstream "+name+" up")
	}
}

// Upstreams replaces the known upstreams with those of the pool now in use (proxy.HealthObserver):
// an upstream renamed or removed by a reload no longer counts as up.
func (h *Health) Upstreams(up map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up = make(map[string]bool, len(up))
	name := ""
	for n, ok := range up {
		h.up[n] = ok
		if ok {
			name = n
		}
	}
	if name != "" {
		h.upLocked(name)
		return
	}
	switch h.Mode() {
	case ModeUp, ModeSuspect, ModeRecovering:
		h.set(ModeDown, "no upstream of the new configuration is up")
	}
}

// UpstreamDown records that an upstream stopped answering or its connection failed.
func (h *Health) UpstreamDown(name string, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up[name] = false
	if h.anyUp() {
		return
	}
	switch h.Mode() {
	case ModeUp, ModeSuspect, ModeRecovering:
		h.set(ModeDown, "no upstream answers: "+reason)
	}
}

// Probe records a Status-Server answer (ok) or a failed probe from an upstream.
func (h *Health) Probe(name string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Mode() != ModeRecovering {
		return
	}
	if !ok {
		h.good = 0
		return
	}
	h.good++
	if h.good >= h.need {
		h.set(ModeUp, "upstream "+name+" answered consecutive Status-Server probes")
	}
}

// Answered records an upstream answer to a request: a suspect edge is up again.
func (h *Health) Answered() {
	if h.Mode() != ModeSuspect {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Mode() == ModeSuspect {
		h.set(ModeUp, "upstream answered")
	}
}

// TimedOut records a request the upstream did not answer within its budget.
func (h *Health) TimedOut() {
	if h.Mode() != ModeUp {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Mode() == ModeUp {
		h.set(ModeSuspect, "request timed out upstream")
	}
}

func (h *Health) anyUp() bool {
	for _, up := range h.up {
		if up {
			return true
		}
	}
	return false
}

// set changes the mode; h.mu is held.
func (h *Health) set(to Mode, reason string) {
	from := Mode(h.mode.Swap(int32(to)))
	if from == to {
		return
	}
	now := h.opts.Now()
	was := now.Sub(h.since)
	h.since = now
	h.transitions[to].Add(1)
	switch {
	case to == ModeDown && (from == ModeRecovering || h.failedBack && now.Sub(h.upSince) < h.opts.StableAfter):
		h.flaps++
		h.lastFlap = now
	case to == ModeDown:
		h.flaps = 0
	case to == ModeUp && from != ModeSuspect:
		h.failedBack, h.upSince = true, now
	}
	msg := "survivability mode changed"
	switch to {
	case ModeDown:
		msg = "cloud NAC unreachable: answering locally from the cache"
	case ModeUp:
		if from == ModeRecovering {
			msg = "cloud NAC reachable again: requests go to the cloud"
		}
	}
	h.opts.Logger.Warn(msg, "from", from.String(), "to", to.String(), "reason", reason, "dur", was.Round(time.Millisecond))
	if h.opts.OnChange != nil {
		h.opts.OnChange(from, to, reason)
	}
}
