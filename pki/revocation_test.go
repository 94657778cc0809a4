package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// warnCounter is a slog.Handler that counts Warn records.
type warnCounter struct {
	mu    sync.Mutex
	warns []string
}

func (w *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		var sb strings.Builder
		sb.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { sb.WriteString(" " + a.String()); return true })
		w.mu.Lock()
		w.warns = append(w.warns, sb.String())
		w.mu.Unlock()
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }
func (w *warnCounter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.warns)
}

// crlServer serves one CRL body; it can be switched to failing.
type crlServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	down    atomic.Bool
	fetches atomic.Int64
}

func newCRLServer(t testing.TB) *crlServer {
	t.Helper()
	s := &crlServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		b := s.body.Load()
		if s.down.Load() || b == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(*b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) set(der []byte) { s.body.Store(&der) }

// makeCRL signs a CRL revoking serials.
func makeCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, number int64, this, next time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: this.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

type revFixture struct {
	ca            *CA
	srv           *crlServer
	good, revoked *Issued
	clock         *fixedClock
	warns         *warnCounter
}

func newRevFixture(t testing.TB) *revFixture {
	t.Helper()
	f := &revFixture{srv: newCRLServer(t), clock: &fixedClock{t: time.Now().Truncate(time.Second)}, warns: &warnCounter{}}
	f.ca = newRoot(t, KeyECDSAP256)
	o := IssueOptions{Usage: UsageClient, CRLURLs: []string{f.srv.URL + "/ca.crl"}}
	o.CommonName = "good"
	f.good = issue(t, f.ca, o)
	o.CommonName = "revoked"
	f.revoked = issue(t, f.ca, o)
	return f
}

func (f *revFixture) checker(t testing.TB, o CheckerOptions) *Checker {
	t.Helper()
	o.Now = f.clock.Now
	o.Logger = slog.New(f.warns)
	c, err := NewChecker(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *revFixture) crl(t testing.TB, number int64, validity time.Duration, revoked ...*x509.Certificate) []byte {
	return makeCRL(t, f.ca.Cert, f.ca.Key, number, f.clock.t, f.clock.t.Add(validity), revoked...)
}

func TestCheckerRevoked(t *testing.T) {
	f := newRevFixture(t)
	f.srv.set(f.crl(t, 1, 24*time.Hour, f.revoked.Cert))
	for _, p := range []Policy{SoftFail, HardFail} {
		t.Run(p.String(), func(t *testing.T) {
			c := f.checker(t, CheckerOptions{Policy: p})
			c.Watch(f.good.Cert, f.ca.Cert)
			c.Refresh(t.Context())
			if err := c.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
				t.Errorf("revoked cert: %v", err)
			}
			if err := c.Check(f.good.Cert, f.ca.Cert); err != nil {
				t.Errorf("good cert: %v", err)
			}
			st := c.Status()
			if len(st) != 1 || st[0].State != StateOK || st[0].Revoked != 1 || st[0].Kind != KindCRL || st[0].Failures != 0 {
				t.Errorf("status %+v", st)
			}
			// Verify consults the checker: the event reason is cert-revoked.
			v, err := Verify([]*x509.Certificate{f.revoked.Cert}, VerifyOptions{Roots: pool(f.ca.Cert), Usage: UsageClient, Revocation: c})
			if !errors.Is(err, ErrRevoked) || v.Reason != ReasonRevoked {
				t.Errorf("Verify: %v %q", err, v.Reason)
			}
		})
	}
	if f.warns.count() != 0 {
		t.Errorf("warnings on success: %v", f.warns.warns)
	}
}

// TestCheckerUnreachable: server down → a warning per attempt, status and
// counters, and the configured policy.
func TestCheckerUnreachable(t *testing.T) {
	tests := []struct {
		policy Policy
		want   error
	}{
		{SoftFail, nil},
		{HardFail, ErrRevocationUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			f := newRevFixture(t)
			f.srv.down.Store(true)
			c := f.checker(t, CheckerOptions{Policy: tt.policy, RetryInterval: time.Minute})
			// Before any fetch: the source is unknown; Check registers it.
			if err := c.Check(f.good.Cert, f.ca.Cert); !errors.Is(err, tt.want) && err != tt.want {
				t.Errorf("first check: %v, want %v", err, tt.want)
			}
			for i := 1; i <= 3; i++ {
				c.Refresh(t.Context())
				if got := f.warns.count(); got != i {
					t.Fatalf("after %d attempts: %d warnings", i, got)
				}
				f.clock.t = f.clock.t.Add(time.Minute)
			}
			if err := c.Check(f.good.Cert, f.ca.Cert); !errors.Is(err, tt.want) && err != tt.want {
				t.Errorf("check: %v, want %v", err, tt.want)
			}
			st := c.Status()
			if len(st) != 1 || st[0].State != StateUnavailable || st[0].Failures != 3 || st[0].ConsecutiveFailures != 3 || st[0].LastError == "" || !st[0].LastSuccess.IsZero() {
				t.Errorf("status %+v", st)
			}
			if !strings.Contains(f.warns.warns[0], f.srv.URL) {
				t.Errorf("warning lacks URL: %s", f.warns.warns[0])
			}
			// Server back: recovery, consecutive failures reset, counter kept.
			f.srv.down.Store(false)
			f.srv.set(f.crl(t, 1, time.Hour, f.revoked.Cert))
			c.Refresh(t.Context())
			if err := c.Check(f.good.Cert, f.ca.Cert); err != nil {
				t.Errorf("after recovery: %v", err)
			}
			st = c.Status()
			if st[0].State != StateOK || st[0].Failures != 3 || st[0].ConsecutiveFailures != 0 {
				t.Errorf("status after recovery %+v", st[0])
			}
			// Down again with a CRL held: data stays until nextUpdate.
			f.srv.Close()
			f.clock.t = f.clock.t.Add(55 * time.Minute)
			c.Refresh(t.Context())
			if err := c.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
				t.Errorf("held CRL, server down: %v", err)
			}
			if err := c.Check(f.good.Cert, f.ca.Cert); err != nil {
				t.Errorf("held fresh CRL: %v", err)
			}
			// Past nextUpdate: stale → policy (revocations still count).
			f.clock.t = f.clock.t.Add(10 * time.Minute)
			if err := c.Check(f.good.Cert, f.ca.Cert); !errors.Is(err, tt.want) && err != tt.want {
				t.Errorf("stale CRL: %v, want %v", err, tt.want)
			}
			if err := c.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
				t.Errorf("stale CRL, revoked: %v", err)
			}
			if st := c.Status(); st[0].State != StateStale {
				t.Errorf("state %s, want stale", st[0].State)
			}
		})
	}
}

// TestCheckerWrongKey: a CRL with the right issuer name but signed by
// another key is rejected, and a good CRL already held is kept.
func TestCheckerWrongKey(t *testing.T) {
	f := newRevFixture(t)
	imposter := newRoot(t, KeyECDSAP256) // same subject name, other key
	if !bytes.Equal(imposter.Cert.RawSubject, f.ca.Cert.RawSubject) {
		t.Fatal("imposter must share the subject name")
	}
	forged := makeCRL(t, imposter.Cert, imposter.Key, 5, f.clock.t, f.clock.t.Add(time.Hour), f.good.Cert)
	f.srv.set(forged)
	c := f.checker(t, CheckerOptions{Policy: HardFail})
	c.Watch(f.good.Cert, f.ca.Cert)
	c.Refresh(t.Context())
	if err := c.Check(f.good.Cert, f.ca.Cert); !errors.Is(err, ErrRevocationUnavailable) {
		t.Errorf("forged CRL accepted? %v", err)
	}
	st := c.Status()
	if st[0].State != StateUnavailable || !strings.Contains(st[0].LastError, "signature") {
		t.Errorf("status %+v", st[0])
	}
	if f.warns.count() != 1 {
		t.Errorf("warnings %d, want 1", f.warns.count())
	}
	// Real CRL, then the forged one again: the real one stays.
	f.srv.set(f.crl(t, 1, time.Hour, f.revoked.Cert))
	f.clock.t = f.clock.t.Add(time.Minute)
	c.Refresh(t.Context())
	if err := c.Check(f.good.Cert, f.ca.Cert); err != nil {
		t.Fatalf("real CRL: %v", err)
	}
	f.srv.set(forged)
	c.Reload()
	c.Refresh(t.Context())
	if err := c.Check(f.good.Cert, f.ca.Cert); err != nil {
		t.Errorf("forged CRL replaced the real one: %v", err)
	}
	if err := c.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked after forged refetch: %v", err)
	}
	// ParseCRL rejects it too.
	if _, err := ParseCRL(forged, f.ca.Cert); err == nil {
		t.Error("ParseCRL accepted a forged CRL")
	}
}

// TestCheckerRefetch: refreshed before nextUpdate, and refetched when
// nextUpdate has passed; a new revocation is picked up.
func TestCheckerRefetch(t *testing.T) {
	f := newRevFixture(t)
	f.srv.set(f.crl(t, 1, time.Hour))
	c := f.checker(t, CheckerOptions{RefreshInterval: 24 * time.Hour, RetryInterval: time.Minute})
	c.Watch(f.good.Cert, f.ca.Cert)
	c.Refresh(t.Context())
	if n := f.srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches %d", n)
	}
	if err := c.Check(f.revoked.Cert, f.ca.Cert); err != nil {
		t.Fatalf("not yet revoked: %v", err)
	}
	f.clock.t = f.clock.t.Add(30 * time.Minute)
	c.Refresh(t.Context())
	if n := f.srv.fetches.Load(); n != 1 {
		t.Errorf("refetched too early: %d", n)
	}
	next := c.Status()[0].NextFetch
	start := next.Add(-54 * time.Minute) // thisUpdate + 54m: 1/10 of 1h before nextUpdate
	if next.Sub(start) != 54*time.Minute || !next.Before(c.Status()[0].NextUpdate) {
		t.Errorf("next fetch %v, nextUpdate %v", next, c.Status()[0].NextUpdate)
	}
	// The CA revokes a certificate; the refresh before nextUpdate sees it.
	f.srv.set(makeCRL(t, f.ca.Cert, f.ca.Key, 2, f.clock.t, f.clock.t.Add(time.Hour), f.revoked.Cert))
	f.clock.t = next
	c.Refresh(t.Context())
	if n := f.srv.fetches.Load(); n != 2 {
		t.Errorf("fetches %d, want 2", n)
	}
	if err := c.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("new revocation: %v", err)
	}
	// A server that keeps serving an expired CRL: refetched each retry.
	f.srv.set(makeCRL(t, f.ca.Cert, f.ca.Key, 3, f.clock.t.Add(-2*time.Hour), f.clock.t.Add(-time.Hour), f.revoked.Cert))
	f.clock.t = c.Status()[0].NextFetch
	c.Refresh(t.Context())
	f.clock.t = f.clock.t.Add(time.Minute)
	c.Refresh(t.Context())
	if n := f.srv.fetches.Load(); n != 4 {
		t.Errorf("fetches %d, want 4 (refetch when nextUpdate passed)", n)
	}
	if w := f.warns.count(); w != 2 {
		t.Errorf("warnings %d, want 2", w)
	}
	// A rolled-back CRL (lower number) is refused.
	f.srv.set(makeCRL(t, f.ca.Cert, f.ca.Key, 1, f.clock.t, f.clock.t.Add(time.Hour)))
	f.clock.t = f.clock.t.Add(time.Minute)
	c.Refresh(t.Context())
	if err := c.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("rollback accepted: %v", err)
	}
}

// TestCheckerCache: a restart with the responder down uses the verified
// on-disk copy.
func TestCheckerCache(t *testing.T) {
	f := newRevFixture(t)
	dir := t.TempDir()
	f.srv.set(f.crl(t, 1, time.Hour, f.revoked.Cert))
	c1 := f.checker(t, CheckerOptions{CacheDir: dir, Policy: HardFail})
	c1.Watch(f.good.Cert, f.ca.Cert)
	c1.Refresh(t.Context())
	f.srv.down.Store(true)
	c2 := f.checker(t, CheckerOptions{CacheDir: dir, Policy: HardFail})
	c2.Watch(f.good.Cert, f.ca.Cert)
	c2.Refresh(t.Context())
	if err := c2.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("cached CRL not used: %v", err)
	}
	if err := c2.Check(f.good.Cert, f.ca.Cert); err != nil {
		t.Errorf("cached fresh CRL: %v", err)
	}
	// A tampered cache file is rejected.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("cache entries %d", len(ents))
	}
	p := filepath.Join(dir, ents[0].Name())
	raw, _ := os.ReadFile(p)
	raw[len(raw)-3] ^= 0xff
	os.WriteFile(p, raw, 0o600)
	c3 := f.checker(t, CheckerOptions{CacheDir: dir, Policy: HardFail})
	c3.Watch(f.good.Cert, f.ca.Cert)
	c3.Refresh(t.Context())
	if err := c3.Check(f.revoked.Cert, f.ca.Cert); !errors.Is(err, ErrRevocationUnavailable) {
		t.Errorf("tampered cache: %v", err)
	}
}

// TestCheckerFile: a configured CRL file covers certificates without a
// distribution point, and is re-read when it changes.
func TestCheckerFile(t *testing.T) {
	f := newRevFixture(t)
	leaf := issue(t, f.ca, IssueOptions{CommonName: "no-cdp", Usage: UsageClient})
	p := filepath.Join(t.TempDir(), "ca.crl")
	must(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: f.crl(t, 1, time.Hour)}), 0o644))
	c := f.checker(t, CheckerOptions{CRLFiles: []string{p}, Issuers: []*x509.Certificate{f.ca.Cert}, Policy: HardFail})
	if err := c.Check(leaf.Cert, f.ca.Cert); !errors.Is(err, ErrRevocationUnavailable) && err != nil {
		t.Errorf("before load: %v", err)
	}
	c.Refresh(t.Context())
	if err := c.Check(leaf.Cert, f.ca.Cert); err != nil {
		t.Errorf("file CRL: %v", err)
	}
	must(t, os.WriteFile(p, f.crl(t, 2, time.Hour, leaf.Cert), 0o644)) // DER this time
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	c.Reload()
	c.Refresh(t.Context())
	if err := c.Check(leaf.Cert, f.ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("updated file CRL: %v", err)
	}
	// A certificate of another CA is not covered by this file.
	other := newRoot(t, KeyECDSAP256)
	ol := issue(t, other, IssueOptions{CommonName: "x", Usage: UsageClient})
	if err := c.Check(ol.Cert, other.Cert); err != nil {
		t.Errorf("uncovered cert: %v", err)
	}
	// The file is replaced by another CA's CRL (same name, other key): its
	// signature fails until the CA bundle reload hands the new CA to
	// SetIssuers; the previous CRL stays in use meanwhile.
	must(t, os.WriteFile(p, makeCRL(t, other.Cert, other.Key, 1, f.clock.t, f.clock.t.Add(time.Hour), ol.Cert), 0o644))
	os.Chtimes(p, time.Now().Add(2*time.Second), time.Now().Add(2*time.Second))
	c.Reload()
	c.Refresh(t.Context())
	if st := c.Status(); !strings.Contains(st[0].LastError, "signature") || st[0].State != StateOK {
		t.Errorf("status %+v", st[0])
	}
	c.SetIssuers([]*x509.Certificate{f.ca.Cert, other.Cert})
	c.Refresh(t.Context())
	if err := c.Check(ol.Cert, other.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("after SetIssuers: %v", err)
	}
}

// TestCheckerOCSP: OCSP answers (RFC 6960) with the same policy.
func TestCheckerOCSP(t *testing.T) {
	ca := newRoot(t, KeyECDSAP256)
	var down atomic.Bool
	var revokedSerial atomic.Pointer[big.Int]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
		if rs := revokedSerial.Load(); rs != nil && rs.Cmp(req.SerialNumber) == 0 {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, time.Now().Add(-time.Hour), ocsp.KeyCompromise
		}
		resp, err := ocsp.CreateResponse(ca.Cert, ca.Cert, tmpl, ca.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(resp)
	}))
	defer srv.Close()
	o := IssueOptions{Usage: UsageClient, OCSPURLs: []string{srv.URL}}
	o.CommonName = "good"
	good := issue(t, ca, o)
	o.CommonName = "revoked"
	revoked := issue(t, ca, o)
	revokedSerial.Store(revoked.Cert.SerialNumber)
	warns := &warnCounter{}
	c, err := NewChecker(CheckerOptions{OCSP: true, Policy: HardFail, Logger: slog.New(warns)})
	if err != nil {
		t.Fatal(err)
	}
	c.Watch(good.Cert, ca.Cert)
	c.Watch(revoked.Cert, ca.Cert)
	c.Refresh(t.Context())
	if err := c.Check(good.Cert, ca.Cert); err != nil {
		t.Errorf("good: %v", err)
	}
	if err := c.Check(revoked.Cert, ca.Cert); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	// Responder down for a new certificate under hard-fail.
	down.Store(true)
	o.CommonName = "new"
	fresh := issue(t, ca, o)
	if err := c.Check(fresh.Cert, ca.Cert); !errors.Is(err, ErrRevocationUnavailable) {
		t.Errorf("unknown, hard-fail: %v", err)
	}
	c.Refresh(t.Context())
	if warns.count() != 1 {
		t.Errorf("warnings %d, want 1", warns.count())
	}
	if n := len(c.Status()); n != 3 {
		t.Errorf("sources %d, want 3", n)
	}
}

// TestCheckerRun: Run fetches in the background and returns nil after its
// goroutines are done when cancelled.
func TestCheckerRun(t *testing.T) {
	base := runtime.NumGoroutine()
	f := newRevFixture(t)
	f.srv.set(makeCRL(t, f.ca.Cert, f.ca.Key, 1, time.Now(), time.Now().Add(time.Hour), f.revoked.Cert))
	c, err := NewChecker(CheckerOptions{Policy: HardFail})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	// The first Check registers the source and wakes Run.
	_ = c.Check(f.revoked.Cert, f.ca.Cert)
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(c.Check(f.revoked.Cert, f.ca.Cert), ErrRevoked) {
		if time.Now().After(deadline) {
			t.Fatalf("background fetch did not happen: %+v", c.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	f.srv.Close()
	f.srv.CloseClientConnections()
	c.client.CloseIdleConnections()
	for i := 0; runtime.NumGoroutine() > base && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines %d, baseline %d", n, base)
	}
}

func BenchmarkCheck(b *testing.B) {
	f := newRevFixture(b)
	var many []*x509.Certificate
	for range 1000 {
		many = append(many, &x509.Certificate{SerialNumber: new(big.Int).SetBytes([]byte{byte(len(many)), 1, 2, 3, 4, 5, 6, 7, 8})})
	}
	many = append(many, f.revoked.Cert)
	f.srv.set(makeCRL(b, f.ca.Cert, f.ca.Key, 1, time.Now(), time.Now().Add(time.Hour), many...))
	c := f.checker(b, CheckerOptions{})
	c.Watch(f.good.Cert, f.ca.Cert)
	c.Refresh(b.Context())
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Check(f.good.Cert, f.ca.Cert); err != nil {
			b.Fatal(err)
		}
	}
}
