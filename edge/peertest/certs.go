package peertest

// Throw-away test PKI with crypto/x509 (the pki package is not a dependency
// of this leaf).
//
// Quirks:
//   - radsecproxy 1.9.2 has no ServerName option: it checks the upstream's
//     certificate against the configured host (CertificateNameCheck on), so
//     the server certificate carries SAN IP:127.0.0.1 and IP:::1 as well as
//     DNS:localhost.
//   - The server certificate has both serverAuth and clientAuth EKUs because
//     radsecproxy uses one tls block both to accept RadSec and to connect
//     upstream, and OpenSSL enforces the EKU of the role.
//   - wpa_supplicant and FreeRADIUS accept ECDSA P-256 certificates with TLS
//     1.2 and 1.3; ECDSA keeps key generation and handshakes cheap.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs is a test PKI written to Dir as PEM files.
type Certs struct {
	Dir string
	// CA is the root certificate (also the trust bundle for every peer).
	CA, CAKey string
	// ServerCert/ServerKey: CN=localhost, SAN DNS:localhost, IP:127.0.0.1,
	// IP:::1; EKU serverAuth and clientAuth.
	ServerCert, ServerKey string
	// ClientCert/ClientKey: CN=client.example, EKU clientAuth.
	ClientCert, ClientKey string

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// NewCerts creates a CA, a server and a client certificate in t.TempDir().
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	c, err := NewCertsDir(tb.TempDir())
	if err != nil {
		tb.Fatalf("test certificates: %v", err)
	}
	return c
}

// NewCertsDir creates a CA, a server and a client certificate in dir.
func NewCertsDir(dir string) (*Certs, error) {
	c := &Certs{Dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("peertest: certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "peertest root CA", Organization: []string{"mxedge peertest"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("peertest: certs: %w", err)
	}
	c.caCert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("peertest: certs: %w", err)
	}
	c.caKey = key
	c.CA, c.CAKey = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := writePEM(c.CA, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if err := writeKey(c.CAKey, key); err != nil {
		return nil, err
	}
	c.ServerCert, c.ServerKey, err = c.Issue("server", CertSpec{
		CommonName: "localhost",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Server:     true, Client: true,
	})
	if err != nil {
		return nil, err
	}
	c.ClientCert, c.ClientKey, err = c.Issue("client", CertSpec{CommonName: "client.example", Client: true})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CertSpec describes a leaf certificate to issue.
type CertSpec struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Server     bool // EKU serverAuth
	Client     bool // EKU clientAuth
	// NotAfter defaults to ten days from now; set it in the past for an
	// expired certificate.
	NotAfter time.Time
}

// Issue signs a leaf certificate with the CA and writes NAME.pem and
// NAME-key.pem into Dir.
func (c *Certs) Issue(name string, s CertSpec) (certPath, keyPath string, err error) {
	if c.caKey == nil {
		return "", "", errors.New("peertest: certs: no CA key")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("peertest: certs: %w", err)
	}
	notAfter := s.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(10 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: []string{"mxedge peertest"}},
		DNSNames:     s.DNSNames,
		IPAddresses:  s.IPs,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if s.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, &key.PublicKey, c.caKey)
	if err != nil {
		return "", "", fmt.Errorf("peertest: certs: %w", err)
	}
	certPath, keyPath = filepath.Join(c.Dir, name+".pem"), filepath.Join(c.Dir, name+"-key.pem")
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	if err := writeKey(keyPath, key); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	// PKCS#8 ("PRIVATE KEY") is read by OpenSSL-based peers and Go alike.
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("peertest: certs: %w", err)
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("peertest: certs: %w", err)
	}
	return nil
}
