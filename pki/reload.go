package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ReloaderOptions name the files a Reloader serves.
type ReloaderOptions struct {
	// CertFile (chain, leaf first) and KeyFile: this side's identity.
	// Both or neither.
	CertFile, KeyFile string
	// KeyPassword decrypts an encrypted KeyFile (optional).
	KeyPassword Password
	// CAFiles are trust anchors for verifying peers (PEM bundles or DER).
	CAFiles []string
	// PollInterval makes Run watch the files' mtimes and sizes; 0 = Run
	// only waits for cancellation (reload on SIGHUP via Reload).
	PollInterval time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// Validate checks the options.
func (o ReloaderOptions) Validate() error {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("pki: certificate and key files go together")
	}
	if o.CertFile == "" && len(o.CAFiles) == 0 {
		return errors.New("pki: reloader has no files")
	}
	if o.PollInterval < 0 {
		return errors.New("pki: negative poll interval")
	}
	return nil
}

// Material is one consistent load of the files. It is never modified
// after it is published.
type Material struct {
	// Certificate is nil without CertFile.
	Certificate *tls.Certificate
	// Roots holds CACerts; nil without CAFiles.
	Roots   *x509.CertPool
	CACerts []*x509.Certificate
	Loaded  time.Time
}

// Reloader holds the current TLS material behind an atomic pointer.
// Handshakes read it through GetCertificate/GetClientCertificate/
// GetConfigForClient, so a reload affects new handshakes only and
// established connections (RadSec sessions, EAP-TLS conversations) keep the
// keys they negotiated.
type Reloader struct {
	o   ReloaderOptions
	log *slog.Logger
	cur atomic.Pointer[Material]

	mu    sync.Mutex // serializes Reload
	stamp map[string]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewReloader loads the files once; an error here is a startup error.
func NewReloader(o ReloaderOptions) (*Reloader, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Reloader{o: o, log: o.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) files() []string {
	var fs []string
	if r.o.CertFile != "" {
		fs = append(fs, r.o.CertFile, r.o.KeyFile)
	}
	return append(fs, r.o.CAFiles...)
}

func (r *Reloader) stamps() map[string]fileStamp {
	m := map[string]fileStamp{}
	for _, f := range r.files() {
		if st, err := os.Stat(f); err == nil {
			m[f] = fileStamp{st.ModTime(), st.Size()}
		}
	}
	return m
}

// Reload reads every file and publishes the result. On any error the
// previous material stays in place and the error is returned.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Stamps are taken before reading: a write racing the read is seen as
	// a change at the next poll and reloaded again.
	stamps := r.stamps()
	m := &Material{Loaded: r.o.Now()}
	if r.o.CertFile != "" {
		tc, err := LoadKeyPairWithPassword(r.o.CertFile, r.o.KeyFile, r.o.KeyPassword)
		if err != nil {
			return err
		}
		m.Certificate = &tc
	}
	if len(r.o.CAFiles) > 0 {
		m.Roots = x509.NewCertPool()
		for _, f := range r.o.CAFiles {
			certs, err := LoadCertificates(f)
			if err != nil {
				return err
			}
			for _, c := range certs {
				m.Roots.AddCert(c)
			}
			m.CACerts = append(m.CACerts, certs...)
		}
	}
	r.stamp = stamps
	r.cur.Store(m)
	return nil
}

// Current returns the material in use.
func (r *Reloader) Current() *Material { return r.cur.Load() }

// GetCertificate is for tls.Config.GetCertificate (server side).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.cur.Load().Certificate; c != nil {
		return c, nil
	}
	return nil, errors.New("pki: no certificate configured")
}

// GetClientCertificate is for tls.Config.GetClientCertificate (client
// side). Without a configured certificate it sends none.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := r.cur.Load().Certificate; c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil
}

// ServerConfig returns a config whose certificate and ClientCAs follow
// reloads: GetConfigForClient hands each handshake a clone of base with the
// current material.
func (r *Reloader) ServerConfig(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := r.cur.Load()
		c := base.Clone()
		if m.Certificate != nil {
			c.Certificates = []tls.Certificate{*m.Certificate}
		}
		if m.Roots != nil {
			c.ClientCAs = m.Roots
		}
		return c, nil
	}
	return cfg
}

// Run polls the files every PollInterval and reloads on change; it returns
// nil when ctx is cancelled. A failed reload (e.g. the certificate was
// replaced but not yet the key) is logged and retried at the next change.
func (r *Reloader) Run(ctx context.Context) error {
	if r.o.PollInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !r.changed() {
			continue
		}
		if err := r.Reload(); err != nil {
			r.log.Warn("certificate reload failed, keeping previous", "err", err)
			r.mu.Lock()
			r.stamp = r.stamps() // retry on the next change, not every tick
			r.mu.Unlock()
			continue
		}
		r.log.Info("certificates reloaded")
	}
}

func (r *Reloader) changed() bool {
	now := r.stamps()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(now) != len(r.stamp) {
		return true
	}
	for f, s := range now {
		if r.stamp[f] != s {
			return true
		}
	}
	return false
}

// String names the files, for logs.
func (r *Reloader) String() string {
	return fmt.Sprintf("reloader(%v)", r.files())
}

// VerifyConnection returns a tls.Config.VerifyConnection callback that runs
// Verify against the current CA material (o.Roots is replaced by it), so
// trust anchors follow reloads and failures carry our typed reasons. Use it
// with InsecureSkipVerify (client side) or ClientAuth RequireAnyClientCert
// (server side), which hand verification to this callback. For a server
// peer without o.DNSName, the handshake's ServerName is checked
// (RFC 6614 §2.3, RFC 6125).
func (r *Reloader) VerifyConnection(o VerifyOptions) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: peer sent no certificate", ErrInvalid)
		}
		vo := o
		vo.Roots = r.cur.Load().Roots
		if vo.DNSName == "" && vo.Usage&UsageServer != 0 {
			vo.DNSName = cs.ServerName
		}
		_, err := Verify(cs.PeerCertificates, vo)
		return err
	}
}
