// Package decisionlog owns the access decision log: one line per Access-Accept, Access-Reject or
// deliberate non-answer, whoever decided (the cloud NAC, the cache, a default, the edge's policy),
// like FreeRADIUS's auth log (radiusd.conf `auth = yes`) and radsecproxy's LogLevel 3 lines.
//
// The request path only copies a decision's fields into a bounded queue (Record never blocks and
// never allocates); one goroutine (Run) formats and writes them through the injected slog
// handler, within a lines-per-second budget, a separate one for rejects so a flood of accepts
// cannot hide them. What the budget or a full queue leaves out is counted (Stats) and said in a
// periodic "decision lines suppressed" line.
package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Mode selects which decisions are logged.
type Mode uint8

// Modes (log.decisions in the configuration: on, off, rejects).
const (
	ModeOn      Mode = iota // every decision
	ModeOff                 // none
	ModeRejects             // Access-Rejects and non-answers only
)

// ParseMode reads on, off or rejects.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "on":
		return ModeOn, nil
	case "off":
		return ModeOff, nil
	case "rejects":
		return ModeRejects, nil
	}
	return 0, fmt.Errorf("%w: %q is not one of on, off, rejects", ErrBadOptions, s)
}

// Codes of Entry.Code: the RADIUS code names of the dictionary (proxy/packet), and none for a
// request deliberately left unanswered (password_logins: no-answer).
const (
	CodeAccept = "Access-Accept"
	CodeReject = "Access-Reject"
	CodeNone   = "none"
	// The answers to a relayed CoA-Request or Disconnect-Request (RFC 5176 §3), for entries with
	// CoA set.
	CodeCoAACK        = "CoA-ACK"
	CodeCoANAK        = "CoA-NAK"
	CodeDisconnectACK = "Disconnect-ACK"
	CodeDisconnectNAK = "Disconnect-NAK"
)

// positive reports whether e grants (an Access-Accept, or a CoA or Disconnect the NAS carried out):
// those share the accepts' budget, the rest the rejects'.
func (e Entry) positive() bool {
	return e.Code == CodeAccept || e.Code == CodeCoAACK || e.Code == CodeDisconnectACK
}

// Entry is one decision: a few strings copied from the decision's event.
type Entry struct {
	Time time.Time
	// CoA marks a relayed CoA or Disconnect ("dynamic authorization" line): Code is the answer sent
	// back, Decider who asked (a CoA client's name, cloud, operator, reconcile), Reason the result
	// and how the NAS was found.
	CoA      bool
	Code     string // CodeAccept, CodeReject, CodeNone; with CoA the Code* answers
	NAS      string // the NAS client's name
	Port     string // NAS-Port-Id, else NAS-Port
	SSID     string // from Called-Station-Id "MAC:SSID"
	MAC      string // Calling-Station-Id
	User     string // User-Name, or the verified certificate identity
	Method   string // mab, eap-tls, eap, pap, chap
	VLAN     string // Tunnel-Private-Group-Id of an Access-Accept
	Decider  string // cloud, cache, default, policy, external, route
	Reason   string // cache-hit, default-vlan, cert-expired, …; empty for the cloud's decisions
	Upstream string // the upstream that answered (deciders cloud and external)
	Site     string
	// Route, Pool and Realm: for deciders external and route, the route the request took, the
	// pool whose server decided, the realm of User-Name.
	Route, Pool, Realm string
}

// Defaults.
const (
	DefaultRate            = 100 // lines per second for accepts
	DefaultRejectRate      = 100 // lines per second for rejects and non-answers
	DefaultQueue           = 4096
	DefaultSummaryInterval = 10 * time.Second
	MaxRate                = 100000
)

// batchDelay is how long Run lets decisions gather once one has arrived: lines appear at most
// this much later than the decision.
const batchDelay = 10 * time.Millisecond

// ErrBadOptions wraps every Options error.
var ErrBadOptions = errors.New("decisionlog: bad options")

// Options configure a Log. The zero value logs every decision at DefaultRate and DefaultRejectRate.
type Options struct {
	Logger *slog.Logger // nil: discard
	Mode   Mode
	// Rate and RejectRate are the lines per second written for accepts, and for rejects and
	// non-answers; each may burst to one second's worth. 0: the default.
	Rate, RejectRate int
	// Queue is how many decisions wait for the writer; more are dropped and counted. Default
	// DefaultQueue.
	Queue int
	// SummaryInterval is how often a "decision lines suppressed" line reports what the budgets
	// and the queue left out, when anything was. Default DefaultSummaryInterval.
	SummaryInterval time.Duration
	Now             func() time.Time // default time.Now
}

// Validate checks o.
func (o Options) Validate() error {
	if o.Mode > ModeRejects {
		return fmt.Errorf("%w: mode %d", ErrBadOptions, o.Mode)
	}
	for _, r := range []int{o.Rate, o.RejectRate} {
		if r < 0 || r > MaxRate {
			return fmt.Errorf("%w: rate %d outside 1..%d lines/s", ErrBadOptions, r, MaxRate)
		}
	}
	if o.Queue < 0 || o.SummaryInterval < 0 {
		return fmt.Errorf("%w: negative queue or summary interval", ErrBadOptions)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.RejectRate == 0 {
		o.RejectRate = DefaultRejectRate
	}
	if o.Queue == 0 {
		o.Queue = DefaultQueue
	}
	if o.SummaryInterval == 0 {
		o.SummaryInterval = DefaultSummaryInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// limits are what a reload may change.
type limits struct {
	mode             Mode
	rate, rejectRate int
}

// Log is the decision log.
type Log struct {
	o      Options
	ch     chan Entry
	limits atomic.Pointer[limits]

	written, suppressed, dropped atomic.Uint64
}

// Stats are the log's counters since New.
type Stats struct {
	Written    uint64 // lines written
	Suppressed uint64 // decisions over a lines-per-second budget
	Dropped    uint64 // decisions that found the queue full
}

// New returns a Log; Run writes it.
func New(o Options) (*Log, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	l := &Log{o: o, ch: make(chan Entry, o.Queue)}
	l.limits.Store(&limits{mode: o.Mode, rate: o.Rate, rejectRate: o.RejectRate})
	return l, nil
}

// Reconfigure applies a reloaded mode and rates (0: the default) to the decisions recorded from
// now on.
func (l *Log) Reconfigure(mode Mode, rate, rejectRate int) error {
	o := l.o
	o.Mode, o.Rate, o.RejectRate = mode, rate, rejectRate
	if err := o.Validate(); err != nil {
		return err
	}
	o = o.withDefaults()
	l.limits.Store(&limits{mode: o.Mode, rate: o.Rate, rejectRate: o.RejectRate})
	return nil
}

// Record queues e for the writer. It never blocks: with the queue full, e is dropped and counted.
func (l *Log) Record(e Entry) {
	switch l.limits.Load().mode {
	case ModeOff:
		return
	case ModeRejects:
		if e.positive() {
			return
		}
	}
	select {
	case l.ch <- e:
	default:
		l.dropped.Add(1)
	}
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{Written: l.written.Load(), Suppressed: l.suppressed.Load(), Dropped: l.dropped.Load()}
}

// bucket is a token bucket of one second's worth of lines.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate int) bool {
	if b.last.IsZero() {
		b.tokens = float64(rate)
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(rate), b.tokens+d.Seconds()*float64(rate))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// writer is Run's state: owned by its goroutine alone.
type writer struct {
	accepts, rejects            bucket
	suppressedAccepts, suppRejs uint64
	droppedSeen                 uint64
}

// Run writes queued decisions until ctx is cancelled, then writes what is still queued (within
// the budgets) and a last summary, and returns nil.
func (l *Log) Run(ctx context.Context) error {
	var w writer
	tick := time.NewTicker(l.o.SummaryInterval)
	defer tick.Stop()
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		select {
		case e := <-l.ch:
			l.write(&w, e)
			// Let decisions gather for batchDelay, then write what queued: a receive per decision
			// would wake this goroutine once per decision, and the goroutine that records it (the
			// request path) pays for each wake-up. The queue (Options.Queue, DefaultQueue by
			// default) holds far more than batchDelay brings at any rate this edge answers.
			pause.Reset(batchDelay)
			select {
			case <-pause.C:
			case <-ctx.Done():
				pause.Stop()
			}
		drain:
			for range cap(l.ch) {
				select {
				case e := <-l.ch:
					l.write(&w, e)
				default:
					break drain
				}
			}
		case <-tick.C:
			l.summary(&w)
		case <-ctx.Done():
			for {
				select {
				case e := <-l.ch:
					l.write(&w, e)
				default:
					l.summary(&w)
					return nil
				}
			}
		}
	}
}

func (l *Log) write(w *writer, e Entry) {
	lim := l.limits.Load()
	now := l.o.Now()
	if e.positive() {
		if !w.accepts.take(now, lim.rate) {
			w.suppressedAccepts++
			l.suppressed.Add(1)
			return
		}
	} else if !w.rejects.take(now, lim.rejectRate) {
		w.suppRejs++
		l.suppressed.Add(1)
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs, slog.String("code", e.Code), slog.String("nas", e.NAS))
	for _, a := range [...]struct{ k, v string }{{"port", e.Port}, {"ssid", e.SSID}, {"mac", e.MAC}, {"user", e.User},
		{"method", e.Method}, {"vlan", e.VLAN}} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	attrs = append(attrs, slog.String("decider", e.Decider))
	for _, a := range [...]struct{ k, v string }{{"reason", e.Reason}, {"upstream", e.Upstream}, {"site", e.Site},
		{"route", e.Route}, {"pool", e.Pool}, {"realm", e.Realm}} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	msg := "access decision"
	if e.CoA {
		msg = "dynamic authorization"
	}
	l.o.Logger.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
	l.written.Add(1)
}

// summary reports what was left out since the last summary, if anything.
func (l *Log) summary(w *writer) {
	dropped := l.dropped.Load()
	newDrops := dropped - w.droppedSeen
	if w.suppressedAccepts == 0 && w.suppRejs == 0 && newDrops == 0 {
		return
	}
	l.o.Logger.LogAttrs(context.Background(), slog.LevelInfo, "decision lines suppressed",
		slog.Uint64("accepts", w.suppressedAccepts), slog.Uint64("rejects", w.suppRejs), slog.Uint64("dropped", newDrops),
		slog.Duration("dur", l.o.SummaryInterval))
	w.suppressedAccepts, w.suppRejs, w.droppedSeen = 0, 0, dropped
}
