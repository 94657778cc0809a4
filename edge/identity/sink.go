package identity

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// driver delivers a batch of queued items to one destination. It returns the items it delivered:
// all of them, or on error a prefix-closed subset (never an item after an undelivered one of the
// same session), which the worker removes before it retries the rest.
type driver interface {
	deliver(ctx context.Context, items []item) (delivered []item, err error)
	close() error
}

// Sink types.
const (
	TypeHTTPS      = "https"
	TypeSyslog     = "syslog"
	TypeAccounting = "radius-accounting"
)

// inboxSize bounds the events waiting for their queue's next commit. Only a disk that stops
// committing fills it; what does not fit is counted and logged as dropped.
const inboxSize = 8192

// commitDelay is how long the first offered event waits for others to share its commit (one
// fsync per group), and how long a woken delivery loop waits for more to share a batch: at
// thousands of events per second a commit and a delivery per event would cost more than the
// requests that made them. It is also the added window in which a kill -9 loses offered events.
const commitDelay = 5 * time.Millisecond

// worker is one sink: its queue, the goroutine that commits to it and the one that delivers.
type worker struct {
	name, typ string
	filter    Filter
	batch     int
	q         *queue
	drv       driver
	log       *slog.Logger
	now       func() time.Time
	backoff   [2]time.Duration // min, max
	timeout   time.Duration
	onState   func(name, typ string, up bool, err string) // nil: none

	in   chan item
	wake chan struct{}

	enqueued, sent, failed, busy atomic.Uint64
	sentBy                       [4]atomic.Uint64 // by Kind
	mu                           sync.Mutex
	up                           int8 // 0 unknown, 1 up, -1 down
	lastErr                      string
	lastErrAt, lastOK            time.Time
	downs                        uint64
}

// offer hands an item to the sink without blocking.
func (w *worker) offer(it item) {
	select {
	case w.in <- it:
		w.enqueued.Add(1)
	default:
		if n := w.busy.Add(1); n&(n-1) == 0 { // a line at the 1st, 2nd, 4th, … drop; every one counted
			w.log.Error("identity event dropped: queue not committing", "sink", w.name, "reason", "inbox-full", "dropped", n)
		}
	}
}

// run commits offered items and delivers queued ones until ctx ends; then it commits what is
// still offered, so a clean shutdown loses nothing.
func (w *worker) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.deliverLoop(ctx)
	}()
	w.commitLoop(ctx)
	wg.Wait()
}

func (w *worker) commitLoop(ctx context.Context) {
	batch := make([]item, 0, 1024)
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case it := <-w.in:
					batch = append(batch, it)
					continue
				default:
				}
				break
			}
			w.commit(batch)
			return
		case it := <-w.in:
			batch = append(batch[:0], it)
		}
		linger := time.NewTimer(commitDelay)
	more:
		for len(batch) < cap(batch) {
			select {
			case it := <-w.in:
				batch = append(batch, it)
			case <-linger.C:
				break more
			case <-ctx.Done():
				break more
			}
		}
		linger.Stop()
		w.commit(batch)
		batch = batch[:0]
	}
}

func (w *worker) commit(batch []item) {
	if len(batch) == 0 {
		return
	}
	c, d, err := w.q.append(batch)
	if err != nil {
		w.busy.Add(uint64(len(batch)))
		w.log.Error("identity events not queued", "sink", w.name, "reason", "disk", "n", len(batch), "err", err)
		return
	}
	if c > 0 || d > 0 {
		w.log.Warn("identity queue full: events removed", "sink", w.name, "coalesced", c, "dropped", d)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) deliverLoop(ctx context.Context) {
	delay := time.Duration(0)
	for {
		if delay > 0 {
			// New events do not cut a backoff short; shutdown does.
			t := time.NewTimer(delay)
		wait:
			for {
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
					break wait
				case <-w.wake:
				}
			}
		}
		items, err := w.q.peek(w.batch)
		if err != nil {
			w.failedAttempt(err)
			delay = w.nextDelay(delay)
			continue
		}
		if len(items) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			}
			delay = 0
			// Let a burst's next commits join this batch.
			t := time.NewTimer(commitDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		good, bad := items[:0:0], items[:0:0]
		for _, it := range items {
			if it.kind == 0 {
				bad = append(bad, it)
				continue
			}
			good = append(good, it)
		}
		if len(bad) > 0 {
			// A record that does not decode can never be delivered: removed, counted, logged.
			w.log.Error("identity queue record unreadable: removed", "sink", w.name, "reason", "malformed", "n", len(bad))
			if err := w.q.remove(bad); err == nil {
				w.q.mu.Lock()
				w.q.dropped += uint64(len(bad))
				w.q.mu.Unlock()
			}
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, w.timeout)
		done, err := w.drv.deliver(dctx, good)
		cancel()
		if len(done) > 0 {
			if rerr := w.q.remove(done); rerr != nil {
				w.failedAttempt(rerr)
				delay = w.nextDelay(delay)
				continue
			}
			w.sent.Add(uint64(len(done)))
			for _, it := range done {
				w.sentBy[it.kind&3].Add(1)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.failedAttempt(err)
			delay = w.nextDelay(delay)
			continue
		}
		w.succeeded()
		delay = 0
	}
}

func (w *worker) nextDelay(d time.Duration) time.Duration {
	if d == 0 {
		return w.backoff[0]
	}
	return min(2*d, w.backoff[1])
}

func (w *worker) failedAttempt(err error) {
	w.failed.Add(1)
	w.mu.Lock()
	w.lastErr, w.lastErrAt = err.Error(), w.now()
	down := w.up != -1
	if down {
		w.up = -1
		w.downs++
	}
	w.mu.Unlock()
	if down {
		w.log.Warn("identity sink down: events kept queued", "sink", w.name, "type", w.typ, "err", err)
		if w.onState != nil {
			w.onState(w.name, w.typ, false, err.Error())
		}
	}
}

func (w *worker) succeeded() {
	w.mu.Lock()
	w.lastOK = w.now()
	back := w.up == -1
	w.up = 1
	w.mu.Unlock()
	if back {
		w.log.Info("identity sink back", "sink", w.name, "type", w.typ, "queued", w.q.len())
		if w.onState != nil {
			w.onState(w.name, w.typ, true, "")
		}
	}
}

// SinkStatus is one sink's state for `mxedge identity status` and the metrics.
type SinkStatus struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	State      string            `json:"state"` // up | down | unknown (nothing attempted yet)
	Queued     int               `json:"queued"`
	Enqueued   uint64            `json:"enqueued"`
	Sent       uint64            `json:"sent"`
	SentByType map[string]uint64 `json:"sent_by_type"`
	Failed     uint64            `json:"failed_attempts"`
	Downs      uint64            `json:"down_transitions"`
	Coalesced  uint64            `json:"coalesced"`
	Dropped    uint64            `json:"dropped"`
	LastError  string            `json:"last_error,omitempty"`
	LastErrAt  *time.Time        `json:"last_error_time,omitempty"`
	LastOK     *time.Time        `json:"last_success_time,omitempty"`
}

func (w *worker) status() SinkStatus {
	c, d := w.q.counts()
	s := SinkStatus{Name: w.name, Type: w.typ, State: "unknown", Queued: w.q.len(), Enqueued: w.enqueued.Load(),
		Sent: w.sent.Load(), Failed: w.failed.Load(), Coalesced: c, Dropped: d + w.busy.Load(), SentByType: map[string]uint64{}}
	for _, k := range Kinds {
		s.SentByType[k.String()] = w.sentBy[k].Load()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch w.up {
	case 1:
		s.State = "up"
	case -1:
		s.State = "down"
	}
	s.Downs, s.LastError = w.downs, w.lastErr
	if !w.lastErrAt.IsZero() {
		t := w.lastErrAt.UTC()
		s.LastErrAt = &t
	}
	if !w.lastOK.IsZero() {
		t := w.lastOK.UTC()
		s.LastOK = &t
	}
	return s
}
