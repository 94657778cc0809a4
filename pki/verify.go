package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Verification defaults (docs/pki.md): SHA-256 or better, and a minimum key
// length of 2048 bits (RSA) or P-256 (ECDSA).
const (
	DefaultMinRSABits   = 2048
	DefaultMinECDSABits = 256
)

// VerifyOptions control Verify.
type VerifyOptions struct {
	// Roots are the trust anchors (required). Intermediates add to the
	// certificates presented after the leaf.
	Roots         *x509.CertPool
	Intermediates *x509.CertPool
	// Usage is the EKU the leaf must allow: UsageClient for a RadSec or
	// EAP-TLS client, UsageServer for a RadSec server. 0 = no EKU check.
	// As with openssl -purpose, a leaf without an EKU extension allows any.
	Usage Usage
	// DNSName, when set, must match the leaf's SANs (RFC 6125, RFC 6614 §2.3).
	DNSName string
	// Now is the clock (nil = time.Now). ClockSkew tolerates a leaf that
	// became valid or expired less than this long ago.
	Now       func() time.Time
	ClockSkew time.Duration
	// Key and signature minimums for every certificate except the root's
	// self-signature. 0 = the defaults (2048, 256); <0 = no minimum.
	MinRSABits   int
	MinECDSABits int
	// RequireSHA256 rejects SHA-1 and MD5 signatures in the chain.
	RequireSHA256 bool
	// Revocation, when set, is consulted for every certificate below the
	// root; nil skips revocation.
	Revocation *Checker
}

// Validate checks the options (mxedge check runs it before serving).
func (o VerifyOptions) Validate() error {
	if o.Roots == nil {
		return fmt.Errorf("%w: no trust anchors configured", ErrUnknownAuthority)
	}
	if o.ClockSkew < 0 {
		return errors.New("pki: negative clock skew")
	}
	if o.Usage&^(UsageServer|UsageClient) != 0 {
		return fmt.Errorf("pki: unknown usage %d", int(o.Usage))
	}
	return nil
}

// Verdict is the outcome of Verify.
type Verdict struct {
	// Chain is the verified chain, leaf first, root last (nil when no
	// chain could be built).
	Chain []*x509.Certificate
	// Reason is the event reason: "ok" or one of the Reason* values.
	Reason string
	// Err is the failure (nil when valid); it wraps one of the Err*
	// sentinels. Verify also returns it.
	Err error
}

// OK reports whether the certificate verified.
func (v *Verdict) OK() bool { return v.Err == nil }

// Event reasons for verification failures.
const (
	ReasonOK                    = "ok"
	ReasonExpired               = "cert-expired"
	ReasonNotYetValid           = "cert-not-yet-valid"
	ReasonUnknownCA             = "unknown-ca"
	ReasonWrongEKU              = "wrong-eku"
	ReasonWeakKey               = "weak-key"
	ReasonWeakSignature         = "weak-signature"
	ReasonRevoked               = "cert-revoked"
	ReasonRevocationUnavailable = "revocation-unavailable"
	ReasonNameMismatch          = "name-mismatch"
	ReasonInvalid               = "cert-invalid"
)

// ErrNameMismatch: the leaf does not carry the expected name.
var ErrNameMismatch = errors.New("pki: certificate name mismatch")

// Reason maps an error from Verify (or Checker.Check) to its event reason.
func Reason(err error) string {
	switch {
	case err == nil:
		return ReasonOK
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrNotYetValid):
		return ReasonNotYetValid
	case errors.Is(err, ErrUnknownAuthority):
		return ReasonUnknownCA
	case errors.Is(err, ErrWrongUsage):
		return ReasonWrongEKU
	case errors.Is(err, ErrWeakKey):
		return ReasonWeakKey
	case errors.Is(err, ErrWeakSignature):
		return ReasonWeakSignature
	case errors.Is(err, ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, ErrRevocationUnavailable):
		return ReasonRevocationUnavailable
	case errors.Is(err, ErrNameMismatch):
		return ReasonNameMismatch
	}
	return ReasonInvalid
}

// Verify checks chain (leaf first, then the intermediates the peer
// presented) against o.Roots: path, validity, EKU purpose, key and
// signature strength, and revocation. The returned error wraps exactly one
// sentinel (ErrExpired, ErrUnknownAuthority, ...); the Verdict carries the
// same error and its event reason.
func Verify(chain []*x509.Certificate, o VerifyOptions) (*Verdict, error) {
	v := &Verdict{}
	fail := func(err error) (*Verdict, error) {
		v.Err, v.Reason = err, Reason(err)
		return v, err
	}
	if len(chain) == 0 || chain[0] == nil {
		return fail(fmt.Errorf("%w: empty chain", ErrInvalid))
	}
	if o.Roots == nil {
		return fail(fmt.Errorf("%w: no trust anchors configured", ErrUnknownAuthority))
	}
	leaf := chain[0]
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	// Tolerate skew on the leaf by verifying at the nearest instant inside
	// its window when now is within ClockSkew of an edge.
	at := now
	switch {
	case now.Before(leaf.NotBefore) && leaf.NotBefore.Sub(now) <= o.ClockSkew:
		at = leaf.NotBefore
	case now.After(leaf.NotAfter) && now.Sub(leaf.NotAfter) <= o.ClockSkew:
		at = leaf.NotAfter
	}
	inter := x509.NewCertPool()
	if o.Intermediates != nil {
		inter = o.Intermediates.Clone()
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	xo := x509.VerifyOptions{
		Roots:         o.Roots,
		Intermediates: inter,
		CurrentTime:   at,
		DNSName:       o.DNSName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if eku := o.Usage.extKeyUsages(); len(eku) > 0 {
		xo.KeyUsages = eku
	}
	// crypto/x509 cannot verify SHA-1/MD5 signatures at all and reports them
	// as an unknown authority; name the real cause first. A self-signed
	// root's own signature is not relied upon and is skipped.
	for _, c := range chain {
		if weakSignature(c.SignatureAlgorithm) && !bytes.Equal(c.RawIssuer, c.RawSubject) {
			return fail(fmt.Errorf("%w: %q signed with %s", ErrWeakSignature, c.Subject.CommonName, opensslSigName(c.SignatureAlgorithm)))
		}
	}
	chains, err := leaf.Verify(xo)
	if err != nil {
		return fail(mapX509Error(err, at))
	}
	v.Chain = chains[0]
	// openssl's purpose check also requires the keyUsage bits a TLS peer
	// uses when the extension is present (RFC 5280 §4.2.1.3).
	if err := checkKeyUsage(leaf, o.Usage); err != nil {
		return fail(err)
	}
	if err := checkStrength(v.Chain, o); err != nil {
		return fail(err)
	}
	if o.Revocation != nil {
		for i := 0; i+1 < len(v.Chain); i++ {
			if err := o.Revocation.Check(v.Chain[i], v.Chain[i+1]); err != nil {
				return fail(err)
			}
		}
	}
	v.Reason = ReasonOK
	return v, nil
}

// mapX509Error turns crypto/x509's error into one of our sentinels.
func mapX509Error(err error, at time.Time) error {
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ia x509.InsecureAlgorithmError
	switch {
	case errors.As(err, &inv):
		switch inv.Reason {
		case x509.Expired:
			if inv.Cert != nil && at.Before(inv.Cert.NotBefore) {
				return fmt.Errorf("%w: %q valid from %s: %w", ErrNotYetValid, inv.Cert.Subject.CommonName, inv.Cert.NotBefore.Format(time.RFC3339), err)
			}
			if inv.Cert != nil {
				return fmt.Errorf("%w: %q expired %s: %w", ErrExpired, inv.Cert.Subject.CommonName, inv.Cert.NotAfter.Format(time.RFC3339), err)
			}
			return fmt.Errorf("%w: %w", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %w", ErrWrongUsage, err)
		}
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.As(err, &ua):
		return fmt.Errorf("%w: %w", ErrUnknownAuthority, err)
	case errors.As(err, &he):
		return fmt.Errorf("%w: %w", ErrNameMismatch, err)
	case errors.As(err, &ia):
		return fmt.Errorf("%w: %w", ErrWeakSignature, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

func checkKeyUsage(leaf *x509.Certificate, u Usage) error {
	if leaf.KeyUsage == 0 {
		return nil
	}
	// TLS client: digitalSignature (or keyAgreement for static DH); TLS
	// server: digitalSignature, keyEncipherment or keyAgreement.
	if u&UsageClient != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement) == 0 {
		return fmt.Errorf("%w: key usage %v lacks digitalSignature", ErrWrongUsage, keyUsageNames(leaf.KeyUsage))
	}
	if u&UsageServer != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment|x509.KeyUsageKeyAgreement) == 0 {
		return fmt.Errorf("%w: key usage %v lacks digitalSignature/keyEncipherment", ErrWrongUsage, keyUsageNames(leaf.KeyUsage))
	}
	return nil
}

func checkStrength(chain []*x509.Certificate, o VerifyOptions) error {
	minRSA, minEC := o.MinRSABits, o.MinECDSABits
	if minRSA == 0 {
		minRSA = DefaultMinRSABits
	}
	if minEC == 0 {
		minEC = DefaultMinECDSABits
	}
	for i, c := range chain {
		switch k := c.PublicKey.(type) {
		case *rsa.PublicKey:
			if minRSA > 0 && k.N.BitLen() < minRSA {
				return fmt.Errorf("%w: %q has RSA %d bits, minimum %d", ErrWeakKey, c.Subject.CommonName, k.N.BitLen(), minRSA)
			}
		case *ecdsa.PublicKey:
			if b := k.Curve.Params().BitSize; minEC > 0 && b < minEC {
				return fmt.Errorf("%w: %q has ECDSA %d bits, minimum %d", ErrWeakKey, c.Subject.CommonName, b, minEC)
			}
		}
		// A root's self-signature is not relied upon (RFC 5280 §6.1: the
		// trust anchor is configured, not verified).
		if o.RequireSHA256 && i < len(chain)-1 && weakSignature(c.SignatureAlgorithm) {
			return fmt.Errorf("%w: %q signed with %s", ErrWeakSignature, c.Subject.CommonName, opensslSigName(c.SignatureAlgorithm))
		}
	}
	return nil
}

func weakSignature(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1, x509.UnknownSignatureAlgorithm:
		return true
	}
	return false
}
