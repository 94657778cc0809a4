package survivability

import (
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
	// ModeRecovering: an upstream is back after the link flapped, and has not yet answered enough
	// consecutive Status-Server probes; still answering locally so a flapping link does not flap
	// the mode.
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

// HealthOptions tune the state machine.
type HealthOptions struct {
	// FailbackProbes is the hold-down after a flap: how many consecutive Status-Server answers an
	// upstream must give after it reconnects before requests go back to the cloud, when the edge
	// already went down once within FlapWindow; it doubles with every further flap in the window
	// (capped at 16 times). After a first outage there is no hold-down: the connection that brings
	// the upstream back has answered a Status-Server already. Default 3 (3 s at the default 1 s
	// interval).
	FailbackProbes int
	// FlapWindow is how long an outage counts as recent for the hold-down. Default 60s.
	FlapWindow time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// OnChange observes every transition (metrics, sd_notify status).
	OnChange func(from, to Mode, reason string)
}

// Health turns upstream connection events into the edge's mode:
//
//	up --timeouts--> suspect --answer--> up
//	up|suspect --no upstream up--> down
//	down --an upstream reconnects, first outage in FlapWindow--> up
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
	good  int         // consecutive answered probes while recovering
	need  int         // probes the current recovery needs
	downs []time.Time // entries into ModeDown within FlapWindow

	transitions [4]atomic.Uint64 // by target mode
}

// NewHealth returns a state machine in ModeUp.
func NewHealth(o HealthOptions) *Health {
	if o.FailbackProbes <= 0 {
		o.FailbackProbes = 3
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
	return &Health{opts: o, up: map[string]bool{}, since: o.Now()}
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
		flaps := len(h.recentDowns()) - 1
		if flaps <= 0 {
			h.set(ModeUp, "upstream "+name+" reconnected and answered Status-Server")
			return
		}
		h.good = 0
		h.need = h.opts.FailbackProbes << min(flaps-1, 4)
		h.set(ModeRecovering, "upstream "+name+" reconnected after a flap")
	case ModeSuspect:
		h.set(ModeUp, "upstream "+name+" up")
	}
}

// recentDowns drops outages older than FlapWindow and returns the rest; h.mu is held.
func (h *Health) recentDowns() []time.Time {
	now := h.opts.Now()
	i := 0
	for i < len(h.downs) && now.Sub(h.downs[i]) > h.opts.FlapWindow {
		i++
	}
	h.downs = append(h.downs[:0], h.downs[i:]...)
	return h.downs
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
	if to == ModeDown {
		h.recentDowns()
		h.downs = append(h.downs, now)
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
