package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
)

// Defaults of Options and SinkOptions.
const (
	DefaultMaxQueue   = 100_000
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = time.Minute
	DefaultTimeout    = 10 * time.Second
	DefaultBatch      = 100
	maxBatch          = 1000
)

// SinkOptions configure one sink. Exactly one of HTTPS, Syslog and Accounting is set, as Type says.
type SinkOptions struct {
	Name   string // unique; names the queue file <Dir>/<Name>.db
	Type   string // TypeHTTPS | TypeSyslog | TypeAccounting
	Filter Filter
	// MaxQueue bounds the queued events (default DefaultMaxQueue); beyond it superseded updates
	// are coalesced, then the oldest events dropped (counted, logged).
	MaxQueue int
	// Batch is the most events per delivery (default DefaultBatch, at most 1000).
	Batch int
	// Timeout bounds one delivery attempt (default DefaultTimeout).
	Timeout    time.Duration
	HTTPS      *HTTPSOptions
	Syslog     *SyslogOptions
	Accounting *AccountingOptions
}

// Options configure a Pusher.
type Options struct {
	// Dir holds one queue file per sink; created 0750 if missing.
	Dir   string
	Sinks []SinkOptions
	// UserSource picks the event's user: user-name (default, the accounting's User-Name),
	// identity (the Access-Accept's User-Name, which the cloud confirmed) or cui
	// (Chargeable-User-Identity, RFC 4372); each falls back to the User-Name when absent.
	UserSource string
	Domains    Domains
	// BackoffMin and BackoffMax bound the wait between failed deliveries, doubling from min to
	// max. Defaults DefaultBackoffMin, DefaultBackoffMax.
	BackoffMin, BackoffMax time.Duration
	// NASSecret returns a NAS client's secret, which the accounting copy needs to re-hide
	// encrypted attributes; nil: none are re-hidden correctly.
	NASSecret func(nas string) []byte
	// OnSinkState is told when a sink goes down (its first failed delivery after working or
	// starting) and when it is back (the first delivery after that), with the error of the
	// failure. It runs on the sink's goroutine and must not block. nil: the journal only.
	OnSinkState func(name, typ string, up bool, err string)
	Logger      *slog.Logger
	Now         func() time.Time
}

var sinkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Validate checks the options without opening anything.
func (o *Options) Validate() error {
	if len(o.Sinks) > 0 && o.Dir == "" {
		return errors.New("identity: no queue directory")
	}
	if o.UserSource != "" && !slices.Contains(UserSources, o.UserSource) {
		return fmt.Errorf("identity: user source %q: want one of user-name, identity, cui", o.UserSource)
	}
	if o.BackoffMin < 0 || o.BackoffMax < 0 || (o.BackoffMax > 0 && o.BackoffMin > o.BackoffMax) {
		return fmt.Errorf("identity: backoff %v..%v: want 0 <= min <= max", o.BackoffMin, o.BackoffMax)
	}
	seen := map[string]bool{}
	for i, s := range o.Sinks {
		if !sinkName.MatchString(s.Name) {
			return fmt.Errorf("identity: sinks[%d]: name %q: letters, digits, '.', '_' or '-', at most 63", i, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("identity: sinks[%d]: name %q used twice", i, s.Name)
		}
		seen[s.Name] = true
		if s.MaxQueue < 0 || s.Batch < 0 || s.Batch > maxBatch || s.Timeout < 0 {
			return fmt.Errorf("identity: sink %s: max_queue, batch (at most %d) and timeout must not be negative", s.Name, maxBatch)
		}
		var err error
		switch s.Type {
		case TypeHTTPS:
			if s.HTTPS == nil {
				return fmt.Errorf("identity: sink %s: https options missing", s.Name)
			}
			err = s.HTTPS.Validate()
		case TypeSyslog:
			if s.Syslog == nil {
				return fmt.Errorf("identity: sink %s: syslog options missing", s.Name)
			}
			err = s.Syslog.Validate()
		case TypeAccounting:
			if s.Accounting == nil {
				return fmt.Errorf("identity: sink %s: radius-accounting options missing", s.Name)
			}
			err = s.Accounting.Validate()
		default:
			return fmt.Errorf("identity: sink %s: type %q: want https, syslog or radius-accounting", s.Name, s.Type)
		}
		if err != nil {
			return fmt.Errorf("identity: sink %s: %w", s.Name, err)
		}
	}
	return nil
}

// Pusher turns session changes into events and hands them to every sink whose filter matches.
type Pusher struct {
	o       Options
	log     *slog.Logger
	workers []*worker // event sinks (https, syslog)
	acct    []*worker // accounting-copy sinks
	n       atomic.Uint64
	started int64 // unix ns at New: with n, makes event IDs unique across restarts

	mu     sync.Mutex
	closed bool
}

// New opens every sink's queue. Nothing is sent until Run.
func New(o Options) (_ *Pusher, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.NASSecret == nil {
		o.NASSecret = func(string) []byte { return nil }
	}
	p := &Pusher{o: o, log: o.Logger, started: o.Now().UnixNano()}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if len(o.Sinks) > 0 {
		if err := os.MkdirAll(o.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
	}
	for _, s := range o.Sinks {
		if s.MaxQueue == 0 {
			s.MaxQueue = DefaultMaxQueue
		}
		if s.Batch == 0 {
			s.Batch = DefaultBatch
		}
		if s.Timeout == 0 {
			s.Timeout = DefaultTimeout
		}
		q, err := openQueue(filepath.Join(o.Dir, s.Name+".db"), s.MaxQueue)
		if err != nil {
			return nil, err
		}
		w := &worker{name: s.Name, typ: s.Type, filter: s.Filter, batch: s.Batch, q: q, log: o.Logger, now: o.Now, onState: o.OnSinkState,
			backoff: [2]time.Duration{o.BackoffMin, o.BackoffMax}, timeout: s.Timeout,
			in: make(chan item, inboxSize), wake: make(chan struct{}, 1)}
		switch s.Type {
		case TypeHTTPS:
			w.drv = newHTTPS(*s.HTTPS)
			p.workers = append(p.workers, w)
		case TypeSyslog:
			w.drv = newSyslog(*s.Syslog)
			p.workers = append(p.workers, w)
		case TypeAccounting:
			w.drv = newAcct(*s.Accounting, o.NASSecret, o.Now, func(n int) {
				w.log.Error("accounting copy dropped: record cannot be forwarded", "sink", w.name, "reason", "undeliverable")
				w.q.mu.Lock()
				w.q.dropped += uint64(n)
				w.q.mu.Unlock()
			})
			p.acct = append(p.acct, w)
		}
		if q.len() > 0 {
			p.log.Info("identity queue reopened", "sink", s.Name, "queued", q.len())
		}
	}
	return p, nil
}

// SessionChanged is the session table's observer: it turns the change into an event (Change)
// and offers it to every matching event sink. It never blocks on a sink.
func (p *Pusher) SessionChanged(prev, cur *Session) {
	kind, reason, ok := Change(prev, cur)
	if !ok || len(p.workers) == 0 {
		return
	}
	s := cur
	if s == nil {
		s = prev
	}
	var payload []byte
	for _, w := range p.workers {
		if !w.filter.Match(s) {
			continue
		}
		if payload == nil {
			ev := build(kind, reason, s, p.o.UserSource, p.o.Domains, p.o.Now(), uint64(p.started)+p.n.Add(1))
			var err error
			if payload, err = json.Marshal(ev); err != nil {
				p.log.Error("identity event not built", "nas", s.NAS, "err", err)
				return
			}
		}
		w.offer(item{kind: kind, key: s.orderKey(), payload: payload})
	}
}

// Accounting offers an acknowledged Accounting-Request to every accounting-copy sink whose filter
// matches s (the session it belongs to). pkt is copied.
func (p *Pusher) Accounting(s *Session, received time.Time, pkt packet.Packet) {
	if len(p.acct) == 0 {
		return
	}
	var payload []byte
	for _, w := range p.acct {
		if !w.filter.Match(s) {
			continue
		}
		if payload == nil {
			payload = acctRecord{received: received, nas: s.NAS, pkt: pkt}.encode()
		}
		w.offer(item{kind: acctKind(pkt), key: sessionKey(s.NAS, s.SessionID), payload: payload})
	}
}

// acctKind maps Acct-Status-Type to the kind used for coalescing: an Interim-Update is an update.
func acctKind(pkt packet.Packet) Kind {
	v, ok := pkt.Attr(packet.AttrAcctStatusType)
	if !ok || len(v) != 4 {
		return KindUpdate
	}
	switch v[3] {
	case 1:
		return KindConnect
	case 2:
		return KindDisconnect
	}
	return KindUpdate
}

// Run delivers until ctx ends, then commits what was offered and returns nil after every
// goroutine has exited. The queues stay open until Close.
func (p *Pusher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, w := range slices.Concat(p.workers, p.acct) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Status returns every sink's state, in configuration order of event sinks then copies.
func (p *Pusher) Status() []SinkStatus {
	var out []SinkStatus
	for _, w := range slices.Concat(p.workers, p.acct) {
		out = append(out, w.status())
	}
	return out
}

// Close closes the drivers and queues; call it after Run returned.
func (p *Pusher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, w := range slices.Concat(p.workers, p.acct) {
		if w.drv != nil {
			errs = append(errs, w.drv.close())
		}
		errs = append(errs, w.q.close())
	}
	return errors.Join(errs...)
}
