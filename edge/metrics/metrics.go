// Package metrics owns mxedge's Prometheus exporter: a private registry (no global state) served at
// /metrics on a loopback address by default. The request path keeps plain atomic counters (proxy,
// survivability) incremented where each request is answered and each decision is made; this package
// reads them only when Prometheus scrapes, through a Snapshot function the daemon supplies. Nothing is
// counted from the event bus, which drops events for a slow subscriber. The one metric observed on
// the request path is the upstream round-trip histogram, fed by ObserveUpstreamRoundTrip (a
// lock-free Observe on a cached series). docs/metrics.md lists every metric.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	Requests    Requests
	Dropped     map[string]uint64 // dropped datagrams by reason (proxy.DropReason names)
	// AnswerTime is the NAS-facing answer time by request kind ("access", "accounting"): from
	// receiving the request to handing its answer to the socket.
	AnswerTime map[string]Histogram
	// Decisions are the Access-Accepts and Access-Rejects by code, method and decider.
	Decisions []Decision
	// LocalDecisions are survivability's access decisions by method, reason and code.
	LocalDecisions []LocalDecision
	// LocalAccounting is the Accounting-Requests survivability handled, by result (spooled,
	// spool-full, spool-error, no-spool).
	LocalAccounting map[string]uint64
	NAS             []NAS
	Upstreams       []Upstream
	Cache           Cache
	Spool           Spool
	EAPTLS          EAPTLS
	Revocation      []Revocation
	// EventsDropped counts NAC events a slow subscriber (events --follow) missed.
	EventsDropped uint64
	Cluster       *Cluster // nil when this edge is alone
	// DecisionLog counts the access decision log's lines (edge/decisionlog.Stats).
	DecisionLog DecisionLog
	// CoA is dynamic authorization and reconciliation (edge/metrics/coa.go).
	CoA CoA
	// Sessions is the session table (edge/metrics/sessions.go); nil when it is off.
	Sessions *Sessions
	// RadSec is every live RadSec connection's TLS parameters (edge/metrics/radsec.go).
	RadSec []RadSecConn
	// RadSecRefused counts connections refused for their RADIUS version (edge/metrics/radsec.go).
	RadSecRefused RadSecRefused
	// Identity is the identity push sinks (edge/metrics/identity.go); empty without any.
	Identity []IdentitySink
	// Routes is the request routes' counters (edge/metrics/routes.go); nil without routes.
	Routes *Routes
	// FTicks is the F-Ticks syslog sender's counters (edge/metrics/routes.go).
	FTicks FTicks
}

// DecisionLog are the decision log's counters.
type DecisionLog struct{ Written, Suppressed, Dropped uint64 }

// Requests are the front door's and router's request counters (proxy.Stats).
type Requests struct {
	Received         uint64 // requests received from NAS devices
	Forwarded        uint64 // requests sent to an upstream
	UpstreamAnswered uint64 // forwarded requests an upstream answered
	Local            uint64 // requests handed to survivability
	NoUpstream       uint64 // forwarded requests no upstream could answer (before the fallback)
	Retried          uint64 // requests re-sent to another upstream after a connection died
	StatusServer     uint64 // Status-Server requests from NAS devices answered by mxedge itself
	DuplicateEvicted uint64 // duplicate-cache entries pushed out before their window was over
}

// Histogram is a fixed-bucket histogram read from the request path's atomics.
type Histogram struct {
	Bounds []float64 // upper bounds in seconds, ascending
	Counts []uint64  // observations per bucket (not cumulative); len(Bounds)+1, the last above every bound
	Sum    float64   // seconds
}

// Decision is one series of the access decision counter.
type Decision struct {
	Code    string // accept, reject
	Method  string // mab, eap-tls, eap, pap, chap, other
	Decider string // cloud, cache, default, policy
	Count   uint64
}

// LocalDecision is one series of the local decision counter.
type LocalDecision struct {
	Method, Reason, Code string
	Count                uint64
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
	LastSeen         time.Time // zero: never
}

// Upstream is one RadSec upstream (proxy.UpstreamStatus).
type Upstream struct {
	Name        string
	State       string        // connecting, up, down
	RTT         time.Duration // smoothed, Status-Server probes included
	Replies     uint64        // replies received, Status-Server probes included
	Downs       uint64        // times the upstream went down
	Connections int
	Inflight    int
}

// Cache is the client cache's size and writer health (cache.Stats).
type Cache struct {
	Entries int
	Drops   uint64
}

// Spool is the accounting spool (spool.Stats).
type Spool struct {
	Depth       int    // records waiting for replay
	Refused     uint64 // records refused because the spool was full
	Quarantined int    // records the replay can never deliver
}

// EAPTLS are the local EAP-TLS server's counters (localeap.Stats).
type EAPTLS struct {
	Conversations int
	Started       uint64
	Challenges    uint64
	Accepted      uint64
	Rejected      uint64
	Expired       uint64
	Discarded     uint64
	Refused       uint64
}

// Certificate is a certificate whose expiry is watched.
type Certificate struct {
	Name     string    `json:"name"` // e.g. "upstream-client", "eap-tls-server"
	NotAfter time.Time `json:"not_after"`
}

// BuildInfo identifies the binary in mxedge_build_info.
type BuildInfo struct {
	Version string // "" : the module version from the Go build info, else "dev"
	Commit  string // "" : the VCS revision from the Go build info, else "unknown"
}

// Options configure the exporter.
type Options struct {
	// Addr is the listen address of /metrics. Default DefaultAddr.
	Addr string
	// Snapshot returns the counters at scrape time. Nil: only build, Go, process, certificate and
	// round-trip metrics.
	Snapshot func() Snapshot
	// Certificates returns the certificates whose expiry is exported.
	Certificates func() []Certificate
	Build        BuildInfo
	Logger       *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	bi, ok := debug.ReadBuildInfo()
	if o.Build.Version == "" {
		o.Build.Version = "dev"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			o.Build.Version = bi.Main.Version
		}
	}
	if o.Build.Commit == "" {
		o.Build.Commit = "unknown"
		if ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && s.Value != "" {
					o.Build.Commit = s.Value
				}
			}
		}
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

// RoundTripBuckets are the upstream round-trip histogram's bounds in seconds: a cloud NAC answers
// in milliseconds to tens of milliseconds; EAP round trips and slow policy lookups reach seconds;
// the request budget ends the scale.
var RoundTripBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Server is the exporter. Create with New, bind with Listen (or let Run), serve with Run.
type Server struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	roundTrip   *prometheus.HistogramVec
	roundTripBy sync.Map // upstream name -> prometheus.Observer

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
	s.roundTrip = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "upstream_round_trip_seconds",
		Help:    "Time from sending a request to an upstream to its answer (forwarded requests only, not Status-Server probes).",
		Buckets: RoundTripBuckets,
	}, []string{"upstream"})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the labels identify the running binary.",
		ConstLabels: prometheus.Labels{"version": o.Build.Version, "commit": o.Build.Commit, "go_version": runtime.Version()},
	})
	build.Set(1)
	s.reg.MustRegister(s.roundTrip, build, &snapshotCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s, nil
}

// Registry is the exporter's registry (tests, or to add collectors).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler serves the registry in the Prometheus text or OpenMetrics format.
func (s *Server) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
}

// ObserveUpstreamRoundTrip records one upstream round trip. It is called on the request path (the
// proxy.Observer), so the labelled series is looked up once per upstream and cached.
func (s *Server) ObserveUpstreamRoundTrip(upstream string, d time.Duration) {
	o, ok := s.roundTripBy.Load(upstream)
	if !ok {
		o, _ = s.roundTripBy.LoadOrStore(upstream, s.roundTrip.WithLabelValues(upstream))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
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

// Run serves /metrics until ctx ends, then returns nil after its goroutines have exited.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
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
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve %s: %w", s.opts.Addr, err)
	}
	return nil
}
