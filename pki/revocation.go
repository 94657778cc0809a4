package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Policy decides what Check returns when revocation status cannot be
// established because a CRL or OCSP responder is unreachable.
type Policy int

const (
	// SoftFail accepts the certificate (and warns): availability over
	// certainty, the usual choice for network access.
	SoftFail Policy = iota
	// HardFail rejects it with ErrRevocationUnavailable.
	HardFail
)

// String returns "soft-fail" or "hard-fail", the config spelling.
func (p Policy) String() string {
	if p == HardFail {
		return "hard-fail"
	}
	return "soft-fail"
}

// ParsePolicy parses "soft-fail" or "hard-fail" ("" = soft-fail).
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "soft-fail", "soft":
		return SoftFail, nil
	case "hard-fail", "hard":
		return HardFail, nil
	}
	return SoftFail, fmt.Errorf("pki: unknown revocation policy %q (soft-fail, hard-fail)", s)
}

// Checker defaults.
const (
	DefaultFetchTimeout    = 10 * time.Second
	DefaultRetryInterval   = time.Minute
	DefaultRefreshInterval = time.Hour
	DefaultOCSPValidity    = time.Hour
	// DefaultMaxCRLSize caps a downloaded CRL or OCSP response.
	DefaultMaxCRLSize = 32 << 20
	fetchParallelism  = 4
	ocspIdle          = 24 * time.Hour
)

// CheckerOptions configure a Checker.
type CheckerOptions struct {
	// CacheDir keeps the last good CRL/OCSP response per source so a
	// restart without network still has revocation data. "" = no cache.
	CacheDir string
	// CRLFiles are local CRLs (PEM or DER), re-read when they change. Their
	// issuer is looked up by name in Issuers and the signature checked.
	CRLFiles []string
	Issuers  []*x509.Certificate
	// OCSP enables querying the certificates' AIA OCSP responders.
	OCSP   bool
	Policy Policy
	// Client for CRL/OCSP HTTP (nil = a client with FetchTimeout).
	Client       *http.Client
	FetchTimeout time.Duration // default 10s
	// RetryInterval: after a failure the source is tried again this soon
	// (and warned about again). Default 1m.
	RetryInterval time.Duration
	// RefreshInterval: a source is refetched at least this often, and
	// always before its nextUpdate. Default 1h.
	RefreshInterval time.Duration
	// OCSPValidity is how long a response without nextUpdate counts as
	// fresh. Default 1h.
	OCSPValidity time.Duration
	MaxSize      int64 // default 32 MiB
	Logger       *slog.Logger
	Now          func() time.Time
}

// Validate checks the options and fills nothing in.
func (o CheckerOptions) Validate() error {
	if o.Policy != SoftFail && o.Policy != HardFail {
		return fmt.Errorf("pki: unknown revocation policy %d", int(o.Policy))
	}
	for _, d := range []time.Duration{o.FetchTimeout, o.RetryInterval, o.RefreshInterval, o.OCSPValidity} {
		if d < 0 {
			return errors.New("pki: negative revocation interval")
		}
	}
	if o.CacheDir != "" {
		if st, err := os.Stat(o.CacheDir); err != nil || !st.IsDir() {
			return fmt.Errorf("pki: revocation cache dir %s: not a directory", o.CacheDir)
		}
	}
	return nil
}

// Source kinds, as shown in Status.
const (
	KindCRL     = "crl"
	KindCRLFile = "crl-file"
	KindOCSP    = "ocsp"
)

// Source states, as shown in Status.
const (
	StatePending     = "pending"     // never fetched yet
	StateOK          = "ok"          // fresh data
	StateStale       = "stale"       // data past nextUpdate, refetch failing
	StateUnavailable = "unavailable" // no data at all
)

// SourceStatus is one CRL distribution point, CRL file or OCSP query.
type SourceStatus struct {
	Kind   string `json:"kind"`
	URL    string `json:"url"` // URL or file path
	Issuer string `json:"issuer,omitempty"`
	// Serial is the certificate an OCSP source is about.
	Serial      string    `json:"serial,omitempty"`
	State       string    `json:"state"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Failures counts every failed fetch (a metrics counter);
	// ConsecutiveFailures resets on success.
	Failures            uint64    `json:"failures"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	ThisUpdate          time.Time `json:"this_update,omitzero"`
	NextUpdate          time.Time `json:"next_update,omitzero"`
	NextFetch           time.Time `json:"next_fetch,omitzero"`
	// Revoked is the number of CRL entries, or 1 for a revoked OCSP answer.
	Revoked int `json:"revoked"`
}

// revocationData is the verified content of a CRL or OCSP response.
type revocationData struct {
	revoked    map[string]time.Time // serial bytes → revocation time
	thisUpdate time.Time
	nextUpdate time.Time // zero: no nextUpdate
	number     string    // CRL number, decimal
	ocspStatus int       // ocsp.Good/Revoked/Unknown for OCSP sources
}

func (d *revocationData) fresh(now time.Time) bool {
	return d != nil && (d.nextUpdate.IsZero() || now.Before(d.nextUpdate))
}

type source struct {
	kind   string
	url    string // URL or file path
	issuer *x509.Certificate
	cert   *x509.Certificate // OCSP: the certificate asked about
	key    string
	// lastUsed (unix nanoseconds) lets Refresh drop OCSP sources of
	// certificates no longer seen; Check updates it under the read lock.
	lastUsed atomic.Int64

	data        *revocationData
	cacheLoaded bool
	fileMod     time.Time
	lastAttempt time.Time
	lastSuccess time.Time
	lastErr     error
	failures    uint64
	consecutive int
	nextFetch   time.Time
}

// Checker keeps revocation data fresh in the background (Run) and answers
// Check from memory: no network on the authentication path.
type Checker struct {
	o      CheckerOptions
	log    *slog.Logger
	client *http.Client
	wake   chan struct{}

	mu       sync.RWMutex
	sources  map[string]*source
	byIssuer map[string][]*source // file CRLs by issuer key
}

// NewChecker validates o and returns a Checker; call Run to start fetching.
func NewChecker(o CheckerOptions) (*Checker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.OCSPValidity == 0 {
		o.OCSPValidity = DefaultOCSPValidity
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxCRLSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Checker{
		o:        o,
		log:      o.Logger,
		client:   o.Client,
		wake:     make(chan struct{}, 1),
		sources:  map[string]*source{},
		byIssuer: map[string][]*source{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.client == nil {
		c.client = &http.Client{Timeout: o.FetchTimeout}
	}
	for _, f := range o.CRLFiles {
		s := &source{kind: KindCRLFile, url: f, key: KindCRLFile + "|" + f}
		c.sources[s.key] = s
	}
	return c, nil
}

// Policy returns the configured policy.
func (c *Checker) Policy() Policy { return c.o.Policy }

func issuerKey(issuer *x509.Certificate) string {
	h := sha256.Sum256(issuer.Raw)
	return string(h[:])
}

func httpURL(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// Watch registers cert's CRL distribution points (and, with OCSP, its
// responder) so they are fetched before the first Check needs them.
// Check registers unknown sources too, but then the first answer comes from
// the policy, not from data.
func (c *Checker) Watch(cert, issuer *x509.Certificate) {
	if cert == nil || issuer == nil {
		return
	}
	c.mu.Lock()
	added := c.registerLocked(cert, issuer)
	c.mu.Unlock()
	if added {
		c.kick()
	}
}

func (c *Checker) registerLocked(cert, issuer *x509.Certificate) bool {
	ik := issuerKey(issuer)
	added := false
	for _, u := range cert.CRLDistributionPoints {
		if !httpURL(u) {
			continue
		}
		k := KindCRL + "|" + u + "|" + ik
		if _, ok := c.sources[k]; !ok {
			c.sources[k] = &source{kind: KindCRL, url: u, issuer: issuer, key: k}
			added = true
		}
	}
	if c.o.OCSP {
		for _, u := range cert.OCSPServer {
			if !httpURL(u) {
				continue
			}
			k := KindOCSP + "|" + u + "|" + ik + "|" + string(cert.SerialNumber.Bytes())
			if _, ok := c.sources[k]; !ok {
				s := &source{kind: KindOCSP, url: u, issuer: issuer, cert: cert, key: k}
				s.lastUsed.Store(c.o.Now().UnixNano())
				c.sources[k] = s
				added = true
			}
			break // one responder per certificate is enough
		}
	}
	return added
}

func (c *Checker) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Check reports whether cert (signed by issuer) is revoked, from data
// already in memory. It returns ErrRevoked, ErrRevocationUnavailable (only
// under HardFail, when the certificate names a CRL/OCSP source but no
// fresh answer is held) or nil. A certificate that names no revocation
// source and is not covered by a configured CRL file is not checkable and
// passes. Unknown sources are registered for the background fetcher.
//
// Call it only for a chain that has already been verified (Verify does):
// the URLs it registers come from the certificate, and fetching URLs from
// an unverified certificate would let any peer make the edge send requests.
func (c *Checker) Check(cert, issuer *x509.Certificate) error {
	if cert == nil || cert.SerialNumber == nil {
		return fmt.Errorf("%w: nil certificate", ErrInvalid)
	}
	if issuer == nil {
		return c.unavailable(cert, "issuer unknown")
	}
	now := c.o.Now()
	ik := issuerKey(issuer)
	serial := string(cert.SerialNumber.Bytes())
	covered, fresh, missing := false, false, false

	c.mu.RLock()
	consult := func(s *source) error {
		covered = true
		if s.kind == KindOCSP {
			s.lastUsed.Store(now.UnixNano())
		}
		if s.data == nil {
			return nil
		}
		if at, ok := s.data.revoked[serial]; ok {
			return fmt.Errorf("%w: serial %s revoked %s (%s %s)", ErrRevoked, colonHex(cert.SerialNumber.Bytes(), false),
				at.UTC().Format(time.RFC3339), s.kind, s.url)
		}
		if s.data.fresh(now) && !(s.kind == KindOCSP && s.data.ocspStatus != ocsp.Good) {
			fresh = true
		}
		return nil
	}
	for _, u := range cert.CRLDistributionPoints {
		if !httpURL(u) {
			continue
		}
		s := c.sources[KindCRL+"|"+u+"|"+ik]
		if s == nil {
			missing = true
			continue
		}
		if err := consult(s); err != nil {
			c.mu.RUnlock()
			return err
		}
	}
	for _, s := range c.byIssuer[ik] {
		if err := consult(s); err != nil {
			c.mu.RUnlock()
			return err
		}
	}
	if c.o.OCSP {
		for _, u := range cert.OCSPServer {
			if !httpURL(u) {
				continue
			}
			s := c.sources[KindOCSP+"|"+u+"|"+ik+"|"+serial]
			if s == nil {
				missing = true
			} else if err := consult(s); err != nil {
				c.mu.RUnlock()
				return err
			}
			break
		}
	}
	c.mu.RUnlock()

	if missing {
		c.Watch(cert, issuer)
	}
	if fresh || (!covered && !missing) {
		return nil
	}
	return c.unavailable(cert, "no fresh CRL or OCSP response")
}

func (c *Checker) unavailable(cert *x509.Certificate, why string) error {
	if c.o.Policy != HardFail {
		return nil
	}
	return fmt.Errorf("%w: %q: %s", ErrRevocationUnavailable, cert.Subject.CommonName, why)
}

// SetIssuers replaces the CA certificates that may sign configured CRL
// files (after a CA bundle reload) and re-reads the files.
func (c *Checker) SetIssuers(issuers []*x509.Certificate) {
	c.mu.Lock()
	c.o.Issuers = slices.Clone(issuers)
	for _, s := range c.sources {
		if s.kind == KindCRLFile {
			s.nextFetch, s.fileMod = time.Time{}, time.Time{}
		}
	}
	c.mu.Unlock()
	c.kick()
}

// Reload re-reads CRL files and refetches every source soon (SIGHUP).
func (c *Checker) Reload() {
	c.mu.Lock()
	for _, s := range c.sources {
		s.nextFetch = time.Time{}
		s.fileMod = time.Time{}
	}
	c.mu.Unlock()
	c.kick()
}

// Run fetches due sources until ctx is cancelled; it returns nil after its
// fetches have finished.
func (c *Checker) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		c.Refresh(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := c.nextDue().Sub(c.o.Now())
		// Wake at least every RetryInterval: files are polled for changes
		// and the injected clock may not follow the wall clock.
		wait = max(min(wait, c.o.RetryInterval), 10*time.Millisecond)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
			timer.Stop() // Go 1.23+ timers: no stale tick to drain
		case <-timer.C:
		}
	}
}

func (c *Checker) nextDue() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	next := c.o.Now().Add(c.o.RetryInterval)
	for _, s := range c.sources {
		if s.nextFetch.Before(next) {
			next = s.nextFetch
		}
	}
	return next
}

// Refresh fetches every source that is due now, in parallel (bounded),
// and returns when all fetches are done. Run calls it; tests call it with
// an injected clock.
func (c *Checker) Refresh(ctx context.Context) {
	now := c.o.Now()
	var due []*source
	c.mu.Lock()
	for k, s := range c.sources {
		// OCSP answers are per certificate: forget certificates not seen for
		// a day so a busy EAP-TLS edge does not poll every client forever.
		if s.kind == KindOCSP && now.Sub(time.Unix(0, s.lastUsed.Load())) > ocspIdle {
			delete(c.sources, k)
			continue
		}
		if !s.nextFetch.After(now) {
			due = append(due, s)
		}
	}
	c.mu.Unlock()
	sem := make(chan struct{}, fetchParallelism)
	var wg sync.WaitGroup
	for _, s := range due {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.fetch(ctx, s)
		})
	}
	wg.Wait()
}

// fetch updates one source. Network and disk I/O happen without the lock;
// the result is installed under it.
func (c *Checker) fetch(ctx context.Context, s *source) {
	c.mu.RLock()
	kind, url, issuer, cert, cacheLoaded, fileMod, old := s.kind, s.url, s.issuer, s.cert, s.cacheLoaded, s.fileMod, s.data
	oldIssuer := issuer
	c.mu.RUnlock()

	var cached *revocationData
	if !cacheLoaded && kind != KindCRLFile {
		cached = c.loadCache(s.key, kind, issuer, cert)
		if old == nil {
			old = cached // a fetched CRL must not be older than the cached one
		}
	}

	var data *revocationData
	var raw []byte
	var err error
	var mod time.Time
	start := c.o.Now()
	switch kind {
	case KindCRL:
		raw, err = c.httpGet(ctx, url)
		if err == nil {
			data, err = parseCRL(raw, issuer)
		}
	case KindCRLFile:
		var st os.FileInfo
		if st, err = os.Stat(url); err == nil {
			mod = st.ModTime()
			// Unchanged and still fresh: nothing to do. An expired file is
			// re-read (and warned about) every RetryInterval.
			if mod.Equal(fileMod) && old != nil && old.fresh(start) {
				c.mu.Lock()
				s.nextFetch = c.o.Now().Add(c.o.RetryInterval)
				c.mu.Unlock()
				return
			}
			raw, err = readFileCapped(url)
			if err == nil {
				issuer, data, err = c.parseCRLFile(raw)
			}
		}
	case KindOCSP:
		raw, err = c.ocspQuery(ctx, url, cert, issuer)
		if err == nil {
			data, err = c.parseOCSP(raw, cert, issuer)
		}
	}
	if ctx.Err() != nil && err != nil {
		return // shutting down: not the responder's fault
	}
	// CRL numbers are per issuer: a file now signed by another CA starts over.
	sameIssuer := oldIssuer != nil && issuer != nil && oldIssuer.Equal(issuer)
	if err == nil && old != nil && kind != KindOCSP && sameIssuer && crlOlder(data, old) {
		err = fmt.Errorf("pki: CRL number %s older than held %s", data.number, old.number)
		data = nil
	}
	now := c.o.Now()
	if err == nil && !data.fresh(now) {
		// Install it (its revocations still hold) but count it as a failure:
		// the publisher is not refreshing.
		err = fmt.Errorf("pki: %s expired at %s", kind, data.nextUpdate.Format(time.RFC3339))
	}

	c.mu.Lock()
	if cached != nil && s.data == nil {
		s.data = cached
	}
	s.cacheLoaded = true
	s.lastAttempt = start
	if data != nil {
		s.data = data
		if kind == KindCRLFile {
			c.setFileIssuerLocked(s, issuer)
			s.fileMod = mod
		}
	}
	if err != nil {
		s.lastErr = err
		s.failures++
		s.consecutive++
		s.nextFetch = now.Add(c.o.RetryInterval)
	} else {
		s.lastErr = nil
		s.lastSuccess = now
		s.consecutive = 0
		s.nextFetch = c.schedule(now, data)
	}
	c.mu.Unlock()

	if err != nil {
		// Warn on every failed fetch until one succeeds: stale revocation
		// data needs an operator, and one line per attempt shows how long.
		c.log.Warn("revocation source unavailable", "reason", kind, "upstream", url, "err", err, "dur", now.Sub(start))
		return
	}
	c.log.Debug("revocation source updated", "reason", kind, "upstream", url, "dur", now.Sub(start))
	if raw != nil && kind != KindCRLFile {
		c.storeCache(s.key, raw)
	}
}

// crlOlder reports whether a newly fetched CRL has a lower CRL number
// (RFC 5280 §5.2.3: monotonically increasing) than the one held, i.e. a
// replayed or rolled-back CRL.
func crlOlder(n, old *revocationData) bool {
	if n.number == "" || old.number == "" {
		return false
	}
	if len(n.number) != len(old.number) {
		return len(n.number) < len(old.number)
	}
	return n.number < old.number
}

// schedule returns when to refetch after a success: before nextUpdate by a
// tenth of the CRL's validity (clamped to 1m..1h), and at most
// RefreshInterval from now. RFC 5280 §5.1.2.5.
func (c *Checker) schedule(now time.Time, d *revocationData) time.Time {
	next := now.Add(c.o.RefreshInterval)
	if !d.nextUpdate.IsZero() {
		margin := min(max(d.nextUpdate.Sub(d.thisUpdate)/10, time.Minute), time.Hour)
		if at := d.nextUpdate.Add(-margin); at.Before(next) {
			next = at
		}
	}
	if !next.After(now) {
		next = now.Add(c.o.RetryInterval)
	}
	return next
}

func (c *Checker) setFileIssuerLocked(s *source, issuer *x509.Certificate) {
	if s.issuer != nil {
		ik := issuerKey(s.issuer)
		c.byIssuer[ik] = slices.DeleteFunc(c.byIssuer[ik], func(x *source) bool { return x == s })
	}
	s.issuer = issuer
	ik := issuerKey(issuer)
	c.byIssuer[ik] = append(c.byIssuer[ik], s)
}

func (c *Checker) httpGet(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return c.do(req)
}

func (c *Checker) do(req *http.Request) ([]byte, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pki: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pki: fetch %s: HTTP %s", req.URL.Redacted(), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("pki: fetch %s: %w", req.URL.Redacted(), err)
	}
	if int64(len(body)) > c.o.MaxSize {
		return nil, fmt.Errorf("%w: response from %s", ErrTooLarge, req.URL.Redacted())
	}
	return body, nil
}

// ocspQuery POSTs an OCSP request (RFC 6960 Appendix A.1).
func (c *Checker) ocspQuery(ctx context.Context, url string, cert, issuer *x509.Certificate) ([]byte, error) {
	reqDER, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return nil, fmt.Errorf("pki: OCSP request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqDER))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	return c.do(req)
}

func (c *Checker) parseOCSP(raw []byte, cert, issuer *x509.Certificate) (*revocationData, error) {
	// ParseResponseForCert checks the response signature against the
	// issuer or a delegated responder certificate it issued (RFC 6960 §4.2.2.2).
	r, err := ocsp.ParseResponseForCert(raw, cert, issuer)
	if err != nil {
		return nil, fmt.Errorf("pki: OCSP response: %w", err)
	}
	d := &revocationData{revoked: map[string]time.Time{}, thisUpdate: r.ThisUpdate, nextUpdate: r.NextUpdate, ocspStatus: r.Status}
	if d.nextUpdate.IsZero() {
		d.nextUpdate = r.ThisUpdate.Add(c.o.OCSPValidity)
	}
	switch r.Status {
	case ocsp.Revoked:
		d.revoked[string(cert.SerialNumber.Bytes())] = r.RevokedAt
	case ocsp.Unknown:
		return d, errors.New("pki: OCSP responder does not know the certificate")
	}
	return d, nil
}

// decodeCRL accepts DER or PEM ("X509 CRL").
func decodeCRL(raw []byte) (*x509.RevocationList, error) {
	if isPEM(raw) {
		rest := raw
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				return nil, errors.New("pki: no X509 CRL block")
			}
			if b.Type == pemCRL {
				raw = b.Bytes
				break
			}
		}
	}
	crl, err := x509.ParseRevocationList(raw)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CRL: %w", err)
	}
	return crl, nil
}

// ParseCRL decodes a CRL (PEM or DER) and checks that issuer signed it.
func ParseCRL(raw []byte, issuer *x509.Certificate) (*x509.RevocationList, error) {
	crl, err := decodeCRL(raw)
	if err != nil {
		return nil, err
	}
	if err := checkCRLIssuer(crl, issuer); err != nil {
		return nil, err
	}
	return crl, nil
}

// checkCRLIssuer: RFC 5280 §6.3.3 (f)-(g): the CRL issuer name matches and
// the signature verifies with the issuer's key (which must allow cRLSign).
func checkCRLIssuer(crl *x509.RevocationList, issuer *x509.Certificate) error {
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("pki: CRL issuer %q is not %q", crl.Issuer.String(), issuer.Subject.String())
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("pki: CRL signature: %w", err)
	}
	return nil
}

func parseCRL(raw []byte, issuer *x509.Certificate) (*revocationData, error) {
	crl, err := ParseCRL(raw, issuer)
	if err != nil {
		return nil, err
	}
	return crlData(crl), nil
}

func crlData(crl *x509.RevocationList) *revocationData {
	d := &revocationData{revoked: make(map[string]time.Time, len(crl.RevokedCertificateEntries)),
		thisUpdate: crl.ThisUpdate, nextUpdate: crl.NextUpdate}
	if crl.Number != nil {
		d.number = crl.Number.String()
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			d.revoked[string(e.SerialNumber.Bytes())] = e.RevocationTime
		}
	}
	return d
}

// parseCRLFile finds the configured issuer that signed a CRL file.
func (c *Checker) parseCRLFile(raw []byte) (*x509.Certificate, *revocationData, error) {
	crl, err := decodeCRL(raw)
	if err != nil {
		return nil, nil, err
	}
	c.mu.RLock()
	issuers := c.o.Issuers
	c.mu.RUnlock()
	lastErr := fmt.Errorf("pki: no configured issuer named %q", crl.Issuer.String())
	for _, is := range issuers {
		if err := checkCRLIssuer(crl, is); err != nil {
			if bytes.Equal(crl.RawIssuer, is.RawSubject) {
				lastErr = err
			}
			continue
		}
		return is, crlData(crl), nil
	}
	return nil, nil, lastErr
}

func (c *Checker) cachePath(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(c.o.CacheDir, "revocation-"+hex.EncodeToString(h[:12])+".der")
}

func (c *Checker) storeCache(key string, raw []byte) {
	if c.o.CacheDir == "" {
		return
	}
	if err := WriteFileAtomic(c.cachePath(key), raw, 0o600, true); err != nil {
		c.log.Warn("revocation cache write failed", "err", err)
	}
}

// loadCache returns a cached response if it still verifies against the
// issuer: the cache directory is not trusted more than the network.
func (c *Checker) loadCache(key, kind string, issuer, cert *x509.Certificate) *revocationData {
	if c.o.CacheDir == "" {
		return nil
	}
	raw, err := readFileCapped(c.cachePath(key))
	if err != nil {
		return nil
	}
	var d *revocationData
	switch kind {
	case KindCRL:
		d, err = parseCRL(raw, issuer)
	case KindOCSP:
		d, err = c.parseOCSP(raw, cert, issuer)
	}
	if err != nil {
		c.log.Warn("revocation cache entry rejected", "err", err)
		return nil
	}
	return d
}

// Status returns every source's state, sorted by kind and URL.
func (c *Checker) Status() []SourceStatus {
	now := c.o.Now()
	c.mu.RLock()
	out := make([]SourceStatus, 0, len(c.sources))
	for _, s := range c.sources {
		st := SourceStatus{Kind: s.kind, URL: s.url, LastAttempt: s.lastAttempt, LastSuccess: s.lastSuccess,
			Failures: s.failures, ConsecutiveFailures: s.consecutive, NextFetch: s.nextFetch}
		if s.issuer != nil {
			st.Issuer = s.issuer.Subject.CommonName
		}
		if s.cert != nil {
			st.Serial = colonHex(s.cert.SerialNumber.Bytes(), false)
		}
		if s.lastErr != nil {
			st.LastError = s.lastErr.Error()
		}
		switch {
		case s.data == nil && s.lastAttempt.IsZero():
			st.State = StatePending
		case s.data == nil:
			st.State = StateUnavailable
		case s.data.fresh(now):
			st.State = StateOK
		default:
			st.State = StateStale
		}
		if s.data != nil {
			st.ThisUpdate, st.NextUpdate, st.Revoked = s.data.thisUpdate, s.data.nextUpdate, len(s.data.revoked)
		}
		out = append(out, st)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b SourceStatus) int {
		return strings.Compare(a.Kind+a.URL+a.Serial, b.Kind+b.URL+b.Serial)
	})
	return out
}
