package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// Defaults for issuance.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// backdate absorbs clock skew between the CA and relying parties.
	backdate = 5 * time.Minute
)

// CA is a certificate authority that can issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain is the issuer chain above Cert, excluding Cert; empty for a root.
	Chain []*x509.Certificate

	// Rand is the randomness for serial numbers and signatures (nil =
	// crypto/rand). Now is the clock (nil = time.Now).
	Rand io.Reader
	Now  func() time.Time
}

// CAOptions describe a new CA.
type CAOptions struct {
	CommonName   string
	Organization string
	KeyType      KeyType // default ecdsa-p256
	// Key, when set, is used instead of generating one.
	Key      crypto.Signer
	Validity time.Duration // default 10y
	// NotBefore defaults to now-5m. NotAfter, when set, overrides Validity.
	NotBefore, NotAfter time.Time
	// Parent nil = self-signed root; else an intermediate signed by Parent
	// (NotAfter is clipped to the parent's).
	Parent *CA
	// MaxPathLen: 0 = default (root unlimited, intermediate 0: may issue only
	// end-entity certificates); >0 = that limit; <0 = unlimited.
	// MaxPathLenZero forces pathLen 0 on a root.
	MaxPathLen     int
	MaxPathLenZero bool
	CRLURLs        []string
	OCSPURLs       []string
	// IssuingCertURLs go in AIA caIssuers (RFC 5280 §4.2.2.1).
	IssuingCertURLs    []string
	SignatureAlgorithm x509.SignatureAlgorithm
	Rand               io.Reader
	Now                func() time.Time
}

// Validate checks the options.
func (o CAOptions) Validate() error {
	if o.CommonName == "" {
		return errors.New("pki: CA common name required")
	}
	if o.Validity < 0 {
		return errors.New("pki: negative validity")
	}
	return o.KeyType.Validate()
}

// NewCA creates a root CA or, with Parent, an intermediate.
func NewCA(o CAOptions) (*CA, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := o.Rand
	if r == nil {
		r = rand.Reader
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	key := o.Key
	if key == nil {
		var err error
		if key, err = generateKey(r, o.KeyType); err != nil {
			return nil, err
		}
	} else if err := checkSigner(key); err != nil {
		return nil, err
	}
	serial, err := randomSerial(r)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validityWindow(now(), o.NotBefore, o.NotAfter, o.Validity, DefaultCAValidity)
	subject := pkix.Name{CommonName: o.CommonName}
	if o.Organization != "" {
		subject.Organization = []string{o.Organization}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: o.CRLURLs,
		OCSPServer:            o.OCSPURLs,
		IssuingCertificateURL: o.IssuingCertURLs,
		SignatureAlgorithm:    o.SignatureAlgorithm,
	}
	switch {
	case o.MaxPathLen > 0:
		tmpl.MaxPathLen = o.MaxPathLen
	case o.MaxPathLen < 0:
		tmpl.MaxPathLen = -1
	case o.Parent != nil || o.MaxPathLenZero:
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	default:
		tmpl.MaxPathLen = -1
	}
	// RFC 5280 §4.2.1.2: subjectKeyIdentifier; crypto/x509 derives it for CAs.
	parent, signer := tmpl, key
	var chain []*x509.Certificate
	if o.Parent != nil {
		if o.Parent.Cert == nil || o.Parent.Key == nil {
			return nil, errors.New("pki: parent CA has no certificate or key")
		}
		if tmpl.NotAfter.After(o.Parent.Cert.NotAfter) {
			tmpl.NotAfter = o.Parent.Cert.NotAfter
		}
		parent, signer = o.Parent.Cert, o.Parent.Key
		chain = append([]*x509.Certificate{o.Parent.Cert}, o.Parent.Chain...)
	}
	der, err := x509.CreateCertificate(r, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, Chain: chain, Rand: o.Rand, Now: o.Now}, nil
}

// Root returns the self-signed root at the top of the CA's chain.
func (ca *CA) Root() *x509.Certificate {
	if len(ca.Chain) == 0 {
		return ca.Cert
	}
	return ca.Chain[len(ca.Chain)-1]
}

// Usage selects the extended key usages of an issued certificate.
type Usage int

// Usages; they combine with |.
const (
	UsageServer Usage = 1 << iota // id-kp-serverAuth
	UsageClient                   // id-kp-clientAuth
)

// String names the usage for CLI and logs.
func (u Usage) String() string {
	switch u {
	case 0:
		return "none"
	case UsageServer:
		return "server"
	case UsageClient:
		return "client"
	case UsageServer | UsageClient:
		return "server+client"
	}
	return fmt.Sprintf("usage(%d)", int(u))
}

func (u Usage) extKeyUsages() []x509.ExtKeyUsage {
	var eku []x509.ExtKeyUsage
	if u&UsageServer != 0 {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if u&UsageClient != 0 {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	return eku
}

// IssueOptions describe an end-entity certificate.
type IssueOptions struct {
	CommonName   string
	Organization string
	DNSNames     []string
	IPAddresses  []net.IP
	Emails       []string
	// UPNs go in SAN otherName 1.3.6.1.4.1.311.20.2.3 as UTF8String.
	UPNs []string
	// NAIRealms go in SAN otherName 1.3.6.1.5.5.7.8.8 as UTF8String (RFC 7585 §2.2).
	NAIRealms []string
	URIs      []string
	// Usage selects EKUs. ExtraExtKeyUsages are appended (e.g. to build a
	// wrong-EKU certificate for tests); at least one of the two is required.
	Usage             Usage
	ExtraExtKeyUsages []x509.ExtKeyUsage
	KeyType           KeyType
	// Key, when set, is used instead of generating one.
	Key      crypto.Signer
	Validity time.Duration // default 1y
	// NotBefore, NotAfter override the window (e.g. for expired-cert tests);
	// NotAfter is otherwise clipped to the CA's.
	// A certificate with only UPN names and no CommonName gets the first UPN
	// as CommonName (see sign).
	NotBefore, NotAfter time.Time
	CRLURLs, OCSPURLs   []string
	IssuingCertURLs     []string
	// SignatureAlgorithm is optional (e.g. SHA1WithRSA for weak-hash tests).
	SignatureAlgorithm x509.SignatureAlgorithm
}

// Validate checks the options before anything is generated.
func (o IssueOptions) Validate() error {
	if o.Usage == 0 && len(o.ExtraExtKeyUsages) == 0 {
		return errors.New("pki: usage required (server or client)")
	}
	if o.Usage&^(UsageServer|UsageClient) != 0 {
		return fmt.Errorf("pki: unknown usage %d", int(o.Usage))
	}
	if o.CommonName == "" && o.sans().empty() {
		return errors.New("pki: common name or subject alternative name required")
	}
	if o.Validity < 0 {
		return errors.New("pki: negative validity")
	}
	return o.KeyType.Validate()
}

func (o IssueOptions) sans() SANs {
	return SANs{DNSNames: o.DNSNames, Emails: o.Emails, IPAddresses: o.IPAddresses, URIs: o.URIs, UPNs: o.UPNs, NAIRealms: o.NAIRealms}
}

// Issued is a certificate with its key and chain.
type Issued struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain is the issuing CA then up to, excluding, the root.
	Chain []*x509.Certificate
}

// DERChain returns the leaf then Chain as DER, the form tls.Certificate
// carries.
func (i *Issued) DERChain() [][]byte {
	out := [][]byte{i.Cert.Raw}
	for _, c := range i.Chain {
		out = append(out, c.Raw)
	}
	return out
}

// Issue creates a key (unless o.Key is set) and a certificate signed by ca.
func (ca *CA) Issue(o IssueOptions) (*Issued, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	key := o.Key
	if key == nil {
		var err error
		if key, err = generateKey(ca.rand(), o.KeyType); err != nil {
			return nil, err
		}
	} else if err := checkSigner(key); err != nil {
		return nil, err
	}
	cert, err := ca.sign(key.Public(), o.sans(), o)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Key: key, Chain: ca.issuedChain()}, nil
}

// SignCSR signs a certificate request. Names in o override the CSR's; when
// o has no SANs, the CSR's (including UPNs) are copied, and when o has no
// CommonName, the CSR's subject is used. The CSR's signature is checked.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, o IssueOptions) (*x509.Certificate, error) {
	if csr == nil {
		return nil, errors.New("pki: nil CSR")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: CSR signature: %w", err)
	}
	sans := o.sans()
	if sans.empty() {
		sans = csrSANs(csr)
	}
	if o.CommonName == "" {
		o.CommonName = csr.Subject.CommonName
		if o.Organization == "" && len(csr.Subject.Organization) > 0 {
			o.Organization = csr.Subject.Organization[0]
		}
	}
	check := o
	check.DNSNames, check.Emails, check.IPAddresses, check.URIs, check.UPNs, check.NAIRealms = sans.DNSNames, sans.Emails, sans.IPAddresses, sans.URIs, sans.UPNs, sans.NAIRealms
	check.Key, check.KeyType = nil, ""
	if err := check.Validate(); err != nil {
		return nil, err
	}
	pub, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, csr.PublicKey)
	}
	return ca.sign(pub, sans, o)
}

func (ca *CA) rand() io.Reader {
	if ca.Rand != nil {
		return ca.Rand
	}
	return rand.Reader
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// issuedChain is the chain an end-entity presents: the issuing CA then its
// intermediates, excluding the root.
func (ca *CA) issuedChain() []*x509.Certificate {
	if len(ca.Chain) == 0 {
		return nil
	}
	out := []*x509.Certificate{ca.Cert}
	return append(out, ca.Chain[:len(ca.Chain)-1]...)
}

func (ca *CA) sign(pub crypto.PublicKey, sans SANs, o IssueOptions) (*x509.Certificate, error) {
	if ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("pki: CA has no certificate or key")
	}
	serial, err := randomSerial(ca.rand())
	if err != nil {
		return nil, err
	}
	if o.CommonName == "" && o.Organization == "" && len(sans.DNSNames)+len(sans.Emails)+len(sans.IPAddresses)+len(sans.URIs) == 0 && len(sans.UPNs) > 0 {
		// An empty subject makes the SAN critical (RFC 5280 §4.2.1.6), and
		// crypto/x509 (our own EAP-TLS server) rejects a critical SAN holding
		// only otherNames it does not know. Name the subject after the UPN.
		o.CommonName = sans.UPNs[0]
	}
	notBefore, notAfter := validityWindow(ca.now(), o.NotBefore, o.NotAfter, o.Validity, DefaultCertValidity)
	if o.NotAfter.IsZero() && notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	subject := pkix.Name{CommonName: o.CommonName}
	if o.Organization != "" {
		subject.Organization = []string{o.Organization}
	}
	// RFC 5280 §4.2.1.3 / RFC 5246 §7.4.2: RSA key exchange (TLS 1.2 static
	// RSA) needs keyEncipherment on server certificates.
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := pub.(*rsa.PublicKey); isRSA && o.Usage&UsageServer != 0 {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           append(o.Usage.extKeyUsages(), o.ExtraExtKeyUsages...),
		BasicConstraintsValid: true,
		CRLDistributionPoints: o.CRLURLs,
		OCSPServer:            o.OCSPURLs,
		IssuingCertificateURL: o.IssuingCertURLs,
		SignatureAlgorithm:    o.SignatureAlgorithm,
	}
	if !sans.empty() {
		ext, err := sanExtension(sans, o.CommonName == "" && o.Organization == "")
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	der, err := x509.CreateCertificate(ca.rand(), tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate: %w", err)
	}
	return cert, nil
}

// randomSerial returns a positive 128-bit random serial. RFC 5280 §4.1.2.2
// allows up to 20 octets; CA/B Forum asks for at least 64 bits of entropy.
func randomSerial(r io.Reader) (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(r, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// validityWindow applies defaults: notBefore = now-5m, notAfter = now+validity.
func validityWindow(now, notBefore, notAfter time.Time, validity, def time.Duration) (time.Time, time.Time) {
	if validity == 0 {
		validity = def
	}
	if notBefore.IsZero() {
		notBefore = now.Add(-backdate)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(validity)
		if notAfter.Before(notBefore) {
			notAfter = notBefore.Add(validity)
		}
	}
	return notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second)
}
