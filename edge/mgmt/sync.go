package mgmt

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/pki"
)

// Syncer defaults.
const (
	DefaultSyncInterval = 30 * time.Minute // docs/management.md, "Schedule"
	DefaultSyncJitter   = 0.1              // ±10%: a fleet restarted together spreads out
	DefaultBackoffMin   = 30 * time.Second
	DefaultRenewBefore  = 30 * 24 * time.Hour // pki.ExpiryThresholds[0]: the first warning
)

// SyncOptions configure a Syncer. The daemon passes the functions, so this package knows neither
// the configuration format nor the cache.
type SyncOptions struct {
	Registration *Registration // required: the regfile

	// ValidateConfig checks a configuration document as `mxedge check` would (required); path is
	// Registration.Config, against which relative paths resolve. A document it refuses is logged
	// with the reason and never reaches Apply: the last good configuration keeps serving.
	ValidateConfig func(path string, doc []byte) error
	// Apply installs a validated document (required): the daemon's SIGHUP path. After Apply
	// succeeds the document is written to Registration.Config, so a restart serves it too.
	Apply func(path string, doc []byte) error
	// MergeCache merges a JSON Lines snapshot of recently authorized clients, newer
	// last-authorized wins (cache.Store.Import(r, true)). nil = snapshots are not pulled.
	MergeCache func(r io.Reader) error
	// Reloaded is called after a renewed certificate has been written, so the daemon reloads its
	// RadSec client TLS material. nil = nothing to do.
	Reloaded func()
	// ServerTLS names the files certificate sync installs the org CA and the local EAP-TLS
	// listener's certificate and key into (the ones survivability.eap_tls names), and the
	// passphrase a delivered encrypted key must open with. nil = server certificates are not
	// pulled.
	ServerTLS *ServerTLSFiles
	// ApplyServerTLS makes the daemon use newly written ServerTLS files: its reload path, which
	// re-reads them for new handshakes. Required with ServerTLS. When it fails the previous files
	// are put back.
	ApplyServerTLS func() error

	Interval    time.Duration // default DefaultSyncInterval
	Jitter      float64       // fraction, default DefaultSyncJitter; negative = none
	BackoffMin  time.Duration // first retry after an outage, doubling; default DefaultBackoffMin
	BackoffMax  time.Duration // default Interval
	RenewBefore time.Duration // renew when the certificate expires within this; default 30 days

	Logger *slog.Logger
	// Now and After are the clock (default time.Now, time.After); Rand returns [0,1) (default
	// math/rand/v2). Tests drive the loop with a fake clock instead of sleeping.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	Rand  func() float64
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

// Validate checks the options.
func (o *SyncOptions) Validate() error {
	switch {
	case o.Registration == nil:
		return errors.New("mgmt: sync: registration is required")
	case o.ValidateConfig == nil || o.Apply == nil:
		return errors.New("mgmt: sync: ValidateConfig and Apply are required")
	case o.Interval < 0 || o.BackoffMin < 0 || o.BackoffMax < 0 || o.RenewBefore < 0:
		return errors.New("mgmt: sync: durations must not be negative")
	case o.ServerTLS != nil && o.ApplyServerTLS == nil:
		return errors.New("mgmt: sync: ApplyServerTLS is required with ServerTLS")
	case o.ServerTLS != nil && (o.ServerTLS.CertFile == "" || o.ServerTLS.KeyFile == "" || o.ServerTLS.CAFile == ""):
		return errors.New("mgmt: sync: ServerTLS needs the certificate, key and CA file")
	case o.Jitter >= 1:
		return fmt.Errorf("mgmt: sync: jitter %v: must be below 1", o.Jitter)
	}
	return o.Registration.Validate()
}

// SyncStatus is the Syncer's state for `mxedge status` and logs.
type SyncStatus struct {
	LastAttempt   time.Time
	LastSuccess   time.Time // every part of a round succeeded (or was not modified)
	LastApplied   time.Time // a new configuration was applied
	ConfigETag    string
	ClientsETag   string
	Failures      int    // consecutive rounds that could not reach the controller
	LastError     string // "" after a clean round
	CertNotAfter  time.Time
	ConfigRejects int // documents refused by ValidateConfig since start

	ServerCertsETag     string
	ServerCertsApplied  time.Time // new server certificates were installed and applied
	ServerCertNotAfter  time.Time // of the server certificate last installed
	ServerCertsRejected int       // bundles refused (validation or apply failed) since start
}

// Syncer pulls configuration and the clients snapshot from the controller and renews the edge
// certificate. Run it for the life of the daemon; it never exits on a cloud failure.
type Syncer struct {
	o      SyncOptions
	reg    *Registration
	log    *slog.Logger
	client *Client
	cert   atomic.Pointer[tls.Certificate]

	mu sync.Mutex
	st SyncStatus
}

// NewSyncer loads the edge certificate and key named by the regfile and builds the mTLS client.
func NewSyncer(o SyncOptions) (*Syncer, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Interval == 0 {
		o.Interval = DefaultSyncInterval
	}
	if o.Jitter == 0 {
		o.Jitter = DefaultSyncJitter
	}
	if o.Jitter < 0 {
		o.Jitter = 0
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = o.Interval
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = DefaultRenewBefore
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	reg := o.Registration
	s := &Syncer{o: o, reg: reg, log: o.Logger}
	tc, err := pki.LoadKeyPair(reg.Certificate, reg.Key)
	if err != nil {
		return nil, fmt.Errorf("mgmt: sync: %w", err)
	}
	s.cert.Store(&tc)
	var roots *x509.CertPool
	if reg.CloudCA != "" {
		certs, err := pki.LoadCertificates(reg.CloudCA)
		if err != nil {
			return nil, fmt.Errorf("mgmt: sync: cloud ca: %w", err)
		}
		roots = x509.NewCertPool()
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	s.client, err = NewClient(ClientOptions{
		BaseURL: reg.Cloud,
		RootCAs: roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		Now:       o.Now,
		Transport: o.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("mgmt: sync: %w", err)
	}
	// The tag of the document already on disk: an unchanged cloud configuration is not
	// downloaded and reloaded again after a restart (see ETag).
	if doc, err := os.ReadFile(reg.Config); err == nil {
		s.st.ConfigETag = ETag(doc)
	}
	s.st.CertNotAfter = tc.Leaf.NotAfter
	return s, nil
}

// Status returns a copy of the current state.
func (s *Syncer) Status() SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Run syncs now and then every Interval (jittered) until ctx is cancelled; after a round that
// could not reach the controller it retries with exponential backoff from BackoffMin to
// BackoffMax. It returns nil on cancel, and holds no goroutine or connection between rounds.
func (s *Syncer) Run(ctx context.Context) error {
	defer s.client.CloseIdleConnections()
	s.log.Info("cloud sync started", "cloud", s.reg.Cloud, "id", s.reg.EdgeID, "dur", s.o.Interval)
	for {
		err := s.SyncOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		delay := s.nextDelay(err)
		select {
		case <-ctx.Done():
			return nil
		case <-s.o.After(delay):
		}
	}
}

// nextDelay is Interval after a round that reached the controller, else the backoff; both
// jittered ±Jitter.
func (s *Syncer) nextDelay(err error) time.Duration {
	s.mu.Lock()
	failures := s.st.Failures
	s.mu.Unlock()
	d := s.o.Interval
	if outage(err) && failures > 0 {
		d = s.o.BackoffMin
		for i := 1; i < failures && d < s.o.BackoffMax; i++ {
			d *= 2
		}
		d = min(d, s.o.BackoffMax)
		s.log.Warn("cloud unreachable: serving on the running configuration", "err", err,
			"failures", failures, "retry", d)
	}
	return s.jitter(d)
}

func (s *Syncer) jitter(d time.Duration) time.Duration {
	if s.o.Jitter == 0 {
		return d
	}
	f := 1 + s.o.Jitter*(2*s.o.Rand()-1)
	return time.Duration(float64(d) * f)
}

// outage: the controller could not be reached or could not serve; retried with backoff.
func outage(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrTLS) || errors.Is(err, ErrClockSkew)
}

// SyncOnce runs one round: renew the certificate if due, pull the configuration, pull the server
// certificates (with ServerTLS), pull the clients snapshot. A part that fails otherwise does not stop the others, but once one finds the
// controller unreachable the round ends there: an outage costs one connection attempt per round.
// The error joins the parts' errors.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	// No connection is kept for 30 minutes: the next round handshakes again (and so presents a
	// renewed certificate at once).
	defer s.client.CloseIdleConnections()
	now := s.o.Now()
	var errs []error
	parts := []func(context.Context) error{s.renewIfDue, s.syncConfig}
	if s.o.ServerTLS != nil {
		parts = append(parts, s.syncServerTLS)
	}
	if s.o.MergeCache != nil {
		parts = append(parts, s.syncClients)
	}
	down := false
	for _, part := range parts {
		err := part(ctx)
		errs = append(errs, err)
		if outage(err) {
			down = true
			break
		}
	}
	err := errors.Join(errs...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.LastAttempt = now
	if err == nil {
		s.st.LastSuccess = now
		s.st.LastError = ""
	} else {
		s.st.LastError = err.Error()
	}
	if down {
		s.st.Failures++
	} else {
		s.st.Failures = 0
	}
	return err
}

func (s *Syncer) syncConfig(ctx context.Context) error {
	s.mu.Lock()
	etag := s.st.ConfigETag
	s.mu.Unlock()
	doc, newTag, notModified, err := s.client.Config(ctx, s.reg.EdgeID, etag)
	if err != nil {
		s.logFailure("cloud configuration not fetched", err)
		return err
	}
	if notModified {
		s.log.Debug("cloud configuration unchanged", "etag", etag)
		return nil
	}
	if newTag == "" {
		newTag = ETag(doc)
	}
	path := s.reg.Config
	if err := s.o.ValidateConfig(path, doc); err != nil {
		s.mu.Lock()
		s.st.ConfigRejects++
		s.mu.Unlock()
		// Error: the controller sent something the edge cannot run; an operator must fix it there.
		s.log.Error("cloud configuration rejected: keeping the running configuration", "reason", err, "etag", newTag)
		return fmt.Errorf("config: %w: %w", ErrConfigRejected, err)
	}
	if err := s.o.Apply(path, doc); err != nil {
		s.log.Error("cloud configuration not applied: keeping the running configuration", "err", err, "etag", newTag)
		return fmt.Errorf("config: apply: %w", err)
	}
	// Written after Apply: if the write fails, the edge still serves the new document, and the
	// next start loads the old file and the next round applies the new one again.
	if err := pki.WriteFileAtomic(path, doc, ConfigFileMode, true); err != nil {
		s.log.Error("cloud configuration applied but not saved", "err", err)
		return fmt.Errorf("config: %w", err)
	}
	s.mu.Lock()
	s.st.ConfigETag = newTag
	s.st.LastApplied = s.o.Now()
	s.mu.Unlock()
	s.log.Info("cloud configuration applied", "etag", newTag)
	return nil
}

func (s *Syncer) syncClients(ctx context.Context) error {
	s.mu.Lock()
	etag := s.st.ClientsETag
	s.mu.Unlock()
	body, newTag, notModified, err := s.client.Clients(ctx, s.reg.EdgeID, etag)
	if err != nil {
		s.logFailure("clients snapshot not fetched", err)
		return err
	}
	if notModified {
		return nil
	}
	defer body.Close()
	if err := s.o.MergeCache(body); err != nil {
		s.log.Warn("clients snapshot not merged", "err", err)
		return fmt.Errorf("clients: %w", err)
	}
	s.mu.Lock()
	s.st.ClientsETag = newTag
	s.mu.Unlock()
	s.log.Info("clients snapshot merged", "etag", newTag)
	return nil
}

// renewIfDue renews the client certificate through the API when it expires within RenewBefore.
// The key is kept (a new CSR from the same key): the certificate file is then the only file that
// changes, replaced atomically, so key and certificate on disk always match, even across a crash.
// Key rotation is a new registration.
func (s *Syncer) renewIfDue(ctx context.Context) error {
	tc := s.cert.Load()
	leaf := tc.Leaf
	now := s.o.Now()
	left := leaf.NotAfter.Sub(now)
	if left > s.o.RenewBefore {
		return nil
	}
	if left <= 0 {
		// Mutual TLS with an expired certificate fails at the handshake, which looks like an
		// outage from here; say what it is. The attempt is still made: a controller may accept it.
		s.log.Error("edge certificate expired: register the edge again", "id", s.reg.EdgeID, "not_after", leaf.NotAfter)
	}
	key, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("renew: %w", pki.ErrUnsupportedKey)
	}
	s.log.Info("renewing edge certificate", "id", s.reg.EdgeID, "not_after", leaf.NotAfter)
	_, csrPEM, err := pki.NewCSR(key, pki.CSROptions{CommonName: leaf.Subject.CommonName})
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	chain, err := s.client.Renew(ctx, s.reg.EdgeID, csrPEM) // errors say "renew: ..."
	if err == nil {
		var certs []*x509.Certificate
		if certs, err = checkIssued(chain, key, now); err != nil {
			err = fmt.Errorf("renew: %w", err)
		} else {
			err = pki.WriteFileAtomic(s.reg.Certificate, pki.EncodeCertificates(certs...), pki.CertFileMode, true)
			if err == nil {
				next := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
				for _, c := range certs {
					next.Certificate = append(next.Certificate, c.Raw)
				}
				s.cert.Store(&next)
				s.mu.Lock()
				s.st.CertNotAfter = certs[0].NotAfter
				s.mu.Unlock()
				s.log.Info("edge certificate renewed", "id", s.reg.EdgeID, "not_after", certs[0].NotAfter)
				if s.o.Reloaded != nil {
					s.o.Reloaded()
				}
				return nil
			}
		}
	}
	// Error once a week is left: the edge loses RadSec and the management API at expiry.
	lvl := slog.LevelWarn
	if left < 7*24*time.Hour {
		lvl = slog.LevelError
	}
	s.log.Log(ctx, lvl, "edge certificate not renewed", "err", err, "not_after", leaf.NotAfter)
	return err
}

// logFailure logs a failed fetch: Warn for an outage (degraded, serving on), Error when the
// controller refuses the edge (an operator must act: re-register).
func (s *Syncer) logFailure(msg string, err error) {
	switch {
	case outage(err):
		s.log.Debug(msg, "err", err) // the loop logs the outage once per round with the retry
	case errors.Is(err, ErrUnauthorized):
		s.log.Error(msg+": the controller refused this edge; register it again", "err", err)
	default:
		s.log.Warn(msg, "err", err)
	}
}
