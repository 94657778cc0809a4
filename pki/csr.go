package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
)

// CSROptions describe a certificate request (PKCS#10, RFC 2986) for an
// organization's CA to sign.
type CSROptions struct {
	CommonName         string
	Organization       string
	OrganizationalUnit string
	Country            string
	DNSNames           []string
	IPAddresses        []net.IP
	Emails             []string
	UPNs               []string
	URIs               []string
	SignatureAlgorithm x509.SignatureAlgorithm
}

// Validate checks the options.
func (o CSROptions) Validate() error {
	if o.CommonName == "" && o.sans().empty() {
		return errors.New("pki: CSR needs a common name or subject alternative name")
	}
	return nil
}

func (o CSROptions) sans() SANs {
	return SANs{DNSNames: o.DNSNames, Emails: o.Emails, IPAddresses: o.IPAddresses, URIs: o.URIs, UPNs: o.UPNs}
}

// NewCSR creates a CSR signed by key; it returns the parsed request and its
// PEM encoding.
func NewCSR(key crypto.Signer, o CSROptions) (*x509.CertificateRequest, []byte, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	if key == nil {
		return nil, nil, ErrNoKey
	}
	if err := checkSigner(key); err != nil {
		return nil, nil, err
	}
	subject := pkix.Name{CommonName: o.CommonName}
	if o.Organization != "" {
		subject.Organization = []string{o.Organization}
	}
	if o.OrganizationalUnit != "" {
		subject.OrganizationalUnit = []string{o.OrganizationalUnit}
	}
	if o.Country != "" {
		subject.Country = []string{o.Country}
	}
	tmpl := &x509.CertificateRequest{Subject: subject, SignatureAlgorithm: o.SignatureAlgorithm}
	if s := o.sans(); !s.empty() {
		ext, err := sanExtension(s, o.CommonName == "" && o.Organization == "")
		if err != nil {
			return nil, nil, err
		}
		tmpl.ExtraExtensions = []pkix.Extension{ext}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse CSR: %w", err)
	}
	return csr, pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// ParseCSR decodes a PEM or DER certificate request and checks its
// signature.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	der := data
	if isPEM(data) {
		rest := data
		der = nil
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == pemCSR || b.Type == "NEW CERTIFICATE REQUEST" {
				der = b.Bytes
				break
			}
		}
		if der == nil {
			return nil, errors.New("pki: no certificate request found")
		}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: CSR signature: %w", err)
	}
	return csr, nil
}
