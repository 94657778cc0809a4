package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// ServerBundle is a server identity checked as a TLS server the organization's clients trust: the
// organization CA certificates, and a server certificate chain with its private key.
type ServerBundle struct {
	CAs         []*x509.Certificate
	Certificate tls.Certificate
}

// ParseServerBundle parses and checks what a controller delivers for the local EAP-TLS listener
// (docs/management.md, "Server certificate sync"): caPEM holds the organization CA certificate(s),
// chainPEM the server certificate (leaf first, then intermediates), keyPEM its private key, plain
// or passphrase-protected (PKCS#8 or legacy PEM, decrypted with password). It refuses a bundle a
// supplicant would refuse or the edge could not serve with: a CA that is not a CA or not valid at
// now, a key that is not the leaf's, a leaf without the serverAuth EKU (RFC 5280 §4.2.1.12;
// Windows supplicants require it), a chain that does not lead to one of the delivered CAs, a
// certificate outside its validity at now, weak keys or signatures. The error wraps the pki
// sentinel of the first problem found.
func ParseServerBundle(caPEM, chainPEM, keyPEM []byte, password Password, now time.Time) (*ServerBundle, error) {
	cas, err := ParseCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: org ca: %w", err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA || !ca.BasicConstraintsValid {
			return nil, fmt.Errorf("pki: org ca: %w: %q is not a CA certificate", ErrInvalid, ca.Subject.CommonName)
		}
		switch {
		case now.Before(ca.NotBefore):
			return nil, fmt.Errorf("pki: org ca: %w: %q valid from %s", ErrNotYetValid, ca.Subject.CommonName, ca.NotBefore.UTC().Format(time.RFC3339))
		case now.After(ca.NotAfter):
			return nil, fmt.Errorf("pki: org ca: %w: %q expired %s", ErrExpired, ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
		}
		roots.AddCert(ca)
	}
	chain, err := ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	key, err := ParseKeyWithPassword(keyPEM, password)
	if err != nil {
		return nil, fmt.Errorf("pki: server key: %w", err)
	}
	tc, err := KeyPair(chain, key, "server certificate", "server key")
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return nil, fmt.Errorf("pki: server certificate: %w: %q has no serverAuth extended key usage", ErrWrongUsage, leaf.Subject.CommonName)
	}
	if _, err := Verify(chain, VerifyOptions{Roots: roots, Usage: UsageServer, Now: func() time.Time { return now }}); err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	return &ServerBundle{CAs: cas, Certificate: tc}, nil
}
