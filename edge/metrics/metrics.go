// Package metrics owns mxedge's Prometheus exporter: a private registry (no global state) served at
// /metrics on a loopback address by default. The request path keeps plain atomic counters; this
// package reads them only when Prometheus scrapes, through a Snapshot function the daemon supplies,
// and counts NAC decisions from the event bus on its own goroutine. The one exception is the upstream
// latency histogram, fed by ObserveUpstreamLatency (a lock-free Observe on a cached series).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mxedge/edge/events"
)

// DefaultAddr is where /metrics is served unless configured: loopback, so that exposing the
// counters (NAS names, upstream names) is a deliberate choice.
const DefaultAddr = "127.0.0.1:9812"

// Namespace prefixes every metric name.
const Namespace = "mxedge"

// ErrBadOptions: Options.Validate failed.
var ErrBadOptions = errors.New("metrics: bad options")

// Snapshot is the daemon's counters at one instant. Counters are totals since start; gauges are
// current values. The zero value is valid (an edge that has seen nothing).
type Snapshot struct {
	Mode        string            // up, suspect, down, recovering
	Transitions map[string]uint64 // mode changes by target mode (failovers: "down")
	Received    uint64            // requests received from NAS devices
	Forwarded   uint64            // requests sent to an upstream
	Answered    uint64            // requests an upstream answered
	Fallback    uint64            // requests handed to survivability
	Dropped     map[string]uint64 // dropped datagrams by reason (proxy.DropReason names)
	NAS         []NAS
	Upstreams   []Upstream
	Cache       Cache
	SpoolDepth  int
	// SpoolRefused counts accounting records refused by a full spool.
	SpoolRefused uint64
	// SpoolQuarantined is the accounting records kept in the spool's quarantine.
	SpoolQuarantined int
	EAPTLS           EAPTLS
	Revocation       []Revocation
}

// Revocation is one CRL or OCSP source (pki.SourceStatus).
type Revocation struct {
	Kind, Source string
	OK           bool
	Failures     uint64
}

// NAS is one NAS client's counters (proxy.NASStats).
type NAS struct {
	Name             string
	Requests         uint64
	Responses        uint64
	Duplicates       uint64
	BadAuthenticator uint64
	MissingMA        uint64
	Malformed        uint64
}

// Upstream is one RadSec upstream (proxy.UpstreamStatus).
type Upstream struct {
	Name     string
	State    string // connecting, up, down
	RTT      time.Duration
	Answered uint64
	Failures uint64
}

// Cache is the client cache's size and writer health (cache.Stats).
type Cache struct {
	Entries int
	Drops   uint64
}

// EAPTLS are the local EAP-TLS server's counters (localeap.Stats).
type EAPTLS struct {
	Conversations int
	Started       uint64
	Accepted      uint64
	Rejected      uint64
}

// Certificate is a certificate whose expiry is watched.
type Certificate struct {
	Name     string    `json:"name"` // e.g. "upstream-client", "eap-tls-server"
	NotAfter time.Time `json:"not_after"`
}

// EventSource is the event bus the exporter counts decisions from (*events.Bus).
type EventSource interface {
	Subscribe(ctx context.Context) <-chan events.Event
	Dropped() uint64
}

// Options configure the exporter.
type Options struct {
	// Addr is the listen address of /metrics. Default DefaultAddr.
	Addr string
	// Snapshot returns the counters at scrape time. Nil: only event and latency metrics.
	Snapshot func() Snapshot
	// Events, when set, are counted into decision, cache lookup and EAP-TLS failure counters.
	Events EventSource
	// Certificates returns the certificates whose days to expiry are exported.
	Certificates func() []Certificate
	// Now is the clock for days to expiry. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks the options after defaults are applied.
func (o Options) Validate() error {
	o = o.withDefaults()
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("%w: address %q: %w", ErrBadOptions, o.Addr, err)
	}
	return nil
}

// LatencyBuckets are the upstream latency histogram's bounds in seconds: a cloud NAC answers in
// tens of milliseconds; EAP round trips and slow policy lookups reach seconds; the request budget
// ends the scale.
var LatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Server is the exporter. Create with New, bind with Listen (or let Run), serve with Run.
type Server struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	latency   *prometheus.HistogramVec
	latencyBy sync.Map // upstream name -> prometheus.Observer

	decisions *prometheus.CounterVec // source, method, outcome, nas
	local     *prometheus.CounterVec // method, reason, outcome
	lookups   *prometheus.CounterVec // result
	eapFail   *prometheus.CounterVec // reason

	mu sync.Mutex
	ln net.Listener
}

// New validates o and registers every metric on a new registry.
func New(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	s := &Server{opts: o, log: o.Logger, reg: prometheus.NewRegistry()}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "upstream_latency_seconds",
		Help:    "Time from sending a request to an upstream to its answer.",
		Buckets: LatencyBuckets,
	}, []string{"upstream"})
	s.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "decisions_total",
		Help: "NAC decisions by NAS, source (upstream or local), method and outcome (accept or reject).",
	}, []string{"nas", "source", "method", "outcome"})
	s.local = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "local_decisions_total",
		Help: "Decisions survivability made while the cloud NAC was unreachable, by method, reason and outcome.",
	}, []string{"method", "reason", "outcome"})
	s.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "cache_lookups_total",
		Help: "Local decisions that found the client in the cache (hit) or not (miss).",
	}, []string{"result"})
	s.eapFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "eaptls_failures_total",
		Help: "Local EAP-TLS conversations that ended in a reject, by reason.",
	}, []string{"reason"})
	for _, r := range []string{"hit", "miss"} {
		s.lookups.WithLabelValues(r) // present at zero from the first scrape
	}
	s.reg.MustRegister(s.latency, s.decisions, s.local, s.lookups, s.eapFail, &snapshotCollector{s: s})
	return s, nil
}

// Registry is the exporter's registry (tests, or to add collectors).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler serves the registry in the Prometheus text or OpenMetrics format.
func (s *Server) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
}

// ObserveUpstreamLatency records one upstream round trip. It is called on the request path (the
// proxy.Observer), so the labelled series is looked up once per upstream and cached.
func (s *Server) ObserveUpstreamLatency(upstream string, d time.Duration) {
	o, ok := s.latencyBy.Load(upstream)
	if !ok {
		o, _ = s.latencyBy.LoadOrStore(upstream, s.latency.WithLabelValues(upstream))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// count turns one NAC event into counters.
func (s *Server) count(ev events.Event) {
	outcome := "reject"
	if ev.Allowed {
		outcome = "accept"
	}
	method := ev.Method
	if method == "" {
		method = "unknown"
	}
	s.decisions.WithLabelValues(ev.NAS, ev.Source, method, outcome).Inc()
	if ev.Source != events.SourceLocal {
		return
	}
	s.local.WithLabelValues(method, ev.Reason, outcome).Inc()
	switch ev.Reason {
	case "cache-hit":
		s.lookups.WithLabelValues("hit").Inc()
	case "default-vlan", "failmode-closed":
		s.lookups.WithLabelValues("miss").Inc()
	}
	if method == "eap-tls" && !ev.Allowed {
		s.eapFail.WithLabelValues(ev.Reason).Inc()
	}
}

// Listen binds the address so a bind error surfaces before Run.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("metrics: listen %s: %w", s.opts.Addr, err)
	}
	s.ln = ln
	return nil
}

// Close releases what Listen bound when Run is never going to serve it (a later start-up step
// failed). Run closes its listener itself when its context ends.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.ln = nil
	return err
}

// Addr is the bound address (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run serves /metrics and counts events until ctx ends, then returns nil after its goroutines
// have exited.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	var wg sync.WaitGroup
	evCtx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	if s.opts.Events != nil {
		ch := s.opts.Events.Subscribe(evCtx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				s.count(ev)
			}
		}()
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("metrics listening", "addr", ln.Addr().String())
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := srv.Shutdown(sctx); serr != nil {
			_ = srv.Close()
		}
		cancel()
		<-errc
	case err = <-errc:
		_ = srv.Close()
	}
	stopEvents()
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve %s: %w", s.opts.Addr, err)
	}
	return nil
}
