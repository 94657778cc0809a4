// Package pkilab writes a small lab PKI into a directory: one CA, a server certificate for
// 127.0.0.1/::1/localhost and a client certificate, as PEM files the real peers (FreeRADIUS,
// radsecproxy, eapol_test) can read, plus ready tls.Configs for Go peers. The `mxedge run --dev` lab
// (edge/lab) and the tests (through pki/pkitest) use it; it links no testing code, so the binary
// does not either.
package pkilab

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"

	"mxedge/pki"
)

// Lab is a generated PKI.
type Lab struct {
	Dir                   string
	CA                    *pki.CA
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	Server, Client        *pki.Issued
}

// New writes a lab PKI into dir with key type kt (empty: ECDSA P-256).
func New(dir string, kt pki.KeyType) (*Lab, error) {
	if kt == "" {
		kt = pki.KeyECDSAP256
	}
	ca, err := pki.NewCA(pki.CAOptions{CommonName: "mxedge test CA", KeyType: kt})
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(pki.IssueOptions{
		CommonName:  "localhost",
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		Usage:       pki.UsageServer | pki.UsageClient,
		KeyType:     kt,
	})
	if err != nil {
		return nil, err
	}
	cli, err := ca.Issue(pki.IssueOptions{
		CommonName: "edge.example.test",
		DNSNames:   []string{"edge.example.test"},
		Emails:     []string{"edge@example.test"},
		Usage:      pki.UsageClient,
		KeyType:    kt,
	})
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Dir: dir, CA: ca, Server: srv, Client: cli,
		CAFile:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client.key"),
	}
	steps := []error{
		pki.WriteCertificates(l.CAFile, true, ca.Cert),
		pki.WriteCertificates(l.ServerCert, true, srv.Cert),
		pki.WriteKey(l.ServerKey, srv.Key, true),
		pki.WriteCertificates(l.ClientCert, true, cli.Cert),
		pki.WriteKey(l.ClientKey, cli.Key, true),
	}
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(l.CA.Cert)
	return p
}

// ServerTLS is a RadSec server configuration requiring client certificates from the lab CA.
func (l *Lab) ServerTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{l.Server.Cert.Raw}, PrivateKey: l.Server.Key, Leaf: l.Server.Cert}},
		ClientCAs:    l.pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientTLS is a RadSec client configuration trusting the lab CA.
func (l *Lab) ClientTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{l.Client.Cert.Raw}, PrivateKey: l.Client.Key, Leaf: l.Client.Cert}},
		RootCAs:      l.pool(),
		MinVersion:   tls.VersionTLS12,
	}
}
