package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// LoadCA reads a CA certificate file (the CA certificate first, then the
// chain above it, as `pki ca init` writes it) and its key. The key must
// match and the certificate must be a CA allowed to sign certificates.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(keyPath)
	if err != nil {
		return nil, err
	}
	c := certs[0]
	if !publicKeysEqual(c.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%w: key %s is not the key of CA certificate %s", ErrKeyMismatch, keyPath, certPath)
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, fmt.Errorf("pki: %s: %q is not a CA certificate", certPath, c.Subject.CommonName)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: %s: %q may not sign certificates (keyUsage)", certPath, c.Subject.CommonName)
	}
	return &CA{Cert: c, Key: key, Chain: certs[1:]}, nil
}

// LoadCSR reads a PEM or DER certificate request and checks its signature.
func LoadCSR(path string) (*x509.CertificateRequest, error) {
	data, err := readFileCapped(path)
	if err != nil {
		return nil, err
	}
	csr, err := ParseCSR(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return csr, nil
}

// RevokedCert is one CRL entry.
type RevokedCert struct {
	Serial    *big.Int
	RevokedAt time.Time
	// ReasonCode per RFC 5280 §5.3.1 (0 unspecified, 1 keyCompromise, ...).
	ReasonCode int
}

// CRLOptions describe a CRL issued by a CA.
type CRLOptions struct {
	// Number must increase with every CRL (RFC 5280 §5.2.3).
	Number  int64
	Revoked []RevokedCert
	// ThisUpdate defaults to now; NextUpdate defaults to ThisUpdate + 7d.
	ThisUpdate, NextUpdate time.Time
}

// CreateCRL signs a CRL and returns it as DER.
func (ca *CA) CreateCRL(o CRLOptions) ([]byte, error) {
	if ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("pki: CA has no certificate or key")
	}
	if o.Number <= 0 {
		return nil, errors.New("pki: CRL number must be positive")
	}
	if o.ThisUpdate.IsZero() {
		o.ThisUpdate = ca.now()
	}
	if o.NextUpdate.IsZero() {
		o.NextUpdate = o.ThisUpdate.Add(7 * 24 * time.Hour)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(o.Number), ThisUpdate: o.ThisUpdate, NextUpdate: o.NextUpdate}
	for _, r := range o.Revoked {
		at := r.RevokedAt
		if at.IsZero() {
			at = o.ThisUpdate
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: at, ReasonCode: r.ReasonCode})
	}
	der, err := x509.CreateRevocationList(ca.rand(), tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w", err)
	}
	return der, nil
}

// EncodeCRL returns a DER CRL as PEM ("X509 CRL").
func EncodeCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCRL, Bytes: der})
}
