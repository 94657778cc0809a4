package mgmt

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"mxedge/pki"
)

// DefaultMaxClockSkew is how far the edge's clock may be from the controller's before register
// refuses: the issued certificate's validity, the cache TTL and the EAP-TLS checks of client
// certificates all rely on the local clock.
const DefaultMaxClockSkew = 5 * time.Minute

// RegisterOptions configure Register.
type RegisterOptions struct {
	Code  string // registration code (required)
	Cloud string // controller base URL, https:// (required)
	// CA, when set, is the PEM CA bundle the controller's certificate must chain to (--ca),
	// instead of the system roots. It is kept as cloud-ca.pem for the Syncer.
	CA       []byte
	StateDir string // default DefaultStateDir
	Force    bool   // replace an existing registration
	// Facts default to DetectFacts(Cloud, Version).
	Facts   *Facts
	Version string
	KeyType pki.KeyType // default pki.DefaultKeyType
	// ValidateConfig checks the configuration document before anything is written; path is
	// where it can be read (relative paths in it resolve next to the staged certificate and key).
	// The CLI passes config.Parse. nil = no check.
	ValidateConfig func(path string, doc []byte) error
	MaxClockSkew   time.Duration // default DefaultMaxClockSkew
	Now            func() time.Time
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Validate checks the options.
func (o *RegisterOptions) Validate() error {
	if strings.TrimSpace(o.Code) == "" {
		return errors.New("mgmt: registration code is required")
	}
	if _, err := url.Parse(o.Cloud); err != nil || !strings.HasPrefix(o.Cloud, "https://") {
		return fmt.Errorf("mgmt: cloud url %q: must be https://host[:port]", o.Cloud)
	}
	if o.MaxClockSkew < 0 {
		return errors.New("mgmt: max clock skew must not be negative")
	}
	return nil
}

// Result is what a successful Register wrote.
type Result struct {
	Registration *Registration
	Regfile      string
	Upstreams    []Upstream
}

// Register onboards the edge: it checks the controller (reachability, TLS, clock) with
// GET /ping before the single-use code is spent, generates the edge key and CSR, presents code,
// CSR and facts to POST /register, validates the answer (certificate matches the key and is
// currently valid, configuration passes Validate) and only then writes key, certificate, CA
// bundles, cloud configuration and, last, the regfile: all or nothing.
func Register(ctx context.Context, o RegisterOptions) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("mgmt: state dir: %w", err)
	}
	regPath := filepath.Join(stateDir, RegfileName)
	names := []string{KeyName, CertName, CABundleName, CloudConfigName, RegfileName}
	if o.CA != nil {
		names = append(names, CloudCAName)
	}
	if !o.Force {
		for _, n := range names {
			p := filepath.Join(stateDir, n)
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%w: %s exists", ErrRegistered, p)
			}
		}
	}

	var roots *x509.CertPool
	if o.CA != nil {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(o.CA) {
			return nil, fmt.Errorf("mgmt: --ca: %w", pki.ErrNoCertificate)
		}
	}
	client, err := NewClient(ClientOptions{BaseURL: o.Cloud, RootCAs: roots, Now: o.Now, Transport: o.Transport})
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()

	// Preflight: a TLS failure or a skewed clock found now costs nothing; found after POST
	// /register it would cost the operator a new code.
	_, serverTime, err := client.Ping(ctx)
	if err != nil {
		return nil, err
	}
	if !serverTime.IsZero() {
		if d := o.Now().Sub(serverTime); d > o.MaxClockSkew || -d > o.MaxClockSkew {
			return nil, fmt.Errorf("%w: the controller's clock says %s, the local clock %s (%s apart, at most %s allowed); fix the clock (NTP) and retry",
				ErrClockSkew, serverTime.UTC().Format(time.RFC3339), o.Now().UTC().Format(time.RFC3339), d.Abs().Round(time.Second), o.MaxClockSkew)
		}
	}

	facts := o.Facts
	if facts == nil {
		f := DetectFacts(o.Cloud, o.Version)
		facts = &f
	}
	facts.Time = o.Now().UTC()
	key, err := pki.GenerateKey(o.KeyType)
	if err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	_, csrPEM, err := pki.NewCSR(key, pki.CSROptions{CommonName: facts.Hostname})
	if err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	o.Logger.Info("registering", "cloud", o.Cloud, "hostname", facts.Hostname)
	resp, err := client.Register(ctx, RegisterRequest{Code: o.Code, CSR: string(csrPEM), Facts: *facts})
	if err != nil {
		return nil, err
	}
	certs, err := checkIssued([]byte(resp.Certificate), key, o.Now())
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	if _, err := pki.ParseCertificates([]byte(resp.CABundle)); err != nil {
		return nil, fmt.Errorf("register: %w: ca_bundle: %v", ErrProtocol, err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}

	reg := &Registration{
		Version:      RegfileVersion,
		EdgeID:       resp.EdgeID,
		Cloud:        o.Cloud,
		RegisteredAt: o.Now().UTC().Truncate(time.Second),
		Certificate:  filepath.Join(stateDir, CertName),
		Key:          filepath.Join(stateDir, KeyName),
		CABundle:     filepath.Join(stateDir, CABundleName),
		Config:       filepath.Join(stateDir, CloudConfigName),
	}
	if o.CA != nil {
		reg.CloudCA = filepath.Join(stateDir, CloudCAName)
	}
	regJSON, err := marshalRegfile(reg)
	if err != nil {
		return nil, err
	}

	st, err := newStage(stateDir)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() { st.cleanup(committed) }()
	files := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{KeyName, keyPEM, pki.KeyFileMode},
		{CertName, pki.EncodeCertificates(certs...), pki.CertFileMode},
		{CABundleName, []byte(resp.CABundle), pki.CertFileMode},
		{CloudConfigName, []byte(resp.Config), ConfigFileMode},
	}
	if o.CA != nil {
		files = append(files, struct {
			name string
			data []byte
			mode fs.FileMode
		}{CloudCAName, o.CA, pki.CertFileMode})
	}
	for _, f := range files {
		if err := st.add(f.name, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	if o.ValidateConfig != nil {
		staged := st.path(CloudConfigName)
		if err := o.ValidateConfig(staged, []byte(resp.Config)); err != nil {
			err = &renamedError{err: err, from: staged, to: reg.Config}
			return nil, fmt.Errorf("register: %w: %w", ErrConfigRejected, err)
		}
	}
	if err := st.add(RegfileName, regJSON, RegfileMode); err != nil {
		return nil, err
	}
	if err := st.commit(); err != nil {
		return nil, err
	}
	committed = true
	o.Logger.Info("registered", "id", reg.EdgeID, "cloud", o.Cloud)
	return &Result{Registration: reg, Regfile: regPath, Upstreams: resp.Upstreams}, nil
}

// renamedError shows the final path of the cloud configuration in a validation error instead of
// the staging path it was checked at; errors.Is still sees the validator's error.
type renamedError struct {
	err      error
	from, to string
}

func (e *renamedError) Error() string { return strings.ReplaceAll(e.err.Error(), e.from, e.to) }
func (e *renamedError) Unwrap() error { return e.err }

// File modes: the regfile names the edge (0600 like the key); the cloud configuration holds NAS
// secrets (0640: the service group reads it, like /etc/mxedge/mxedge.yaml).
const (
	RegfileMode    fs.FileMode = 0o600
	ConfigFileMode fs.FileMode = 0o640
)

// checkIssued parses the issued chain and checks it belongs to key and is valid now; a
// certificate that is not yet valid here means our clock is behind the controller's CA.
func checkIssued(chainPEM []byte, key crypto.Signer, now time.Time) ([]*x509.Certificate, error) {
	certs, err := pki.ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrProtocol, err)
	}
	leaf := certs[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: certificate: %w", ErrProtocol, pki.ErrKeyMismatch)
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: the issued certificate is valid from %s but the local clock says %s; fix the clock (NTP)",
			ErrClockSkew, leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if err := pki.CheckValidity(leaf, now); err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrProtocol, err)
	}
	return certs, nil
}

// DetectFacts describes this host: hostname, version, and the address and MAC of the interface
// the route to the controller leaves through (a UDP "connect" sends no packet).
func DetectFacts(cloud, version string) Facts {
	f := Facts{Version: version}
	if f.Version == "" {
		f.Version = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			f.Version = bi.Main.Version
		}
	}
	f.Hostname, _ = os.Hostname()
	u, err := url.Parse(cloud)
	if err != nil {
		return f
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return f
	}
	local, _ := c.LocalAddr().(*net.UDPAddr)
	c.Close()
	if local == nil {
		return f
	}
	f.MgmtIP = local.IP.String()
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(local.IP) && len(ifc.HardwareAddr) > 0 {
				f.MgmtMAC = ifc.HardwareAddr.String()
			}
		}
	}
	return f
}
