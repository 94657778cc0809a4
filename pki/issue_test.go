package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"
)

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		kt   KeyType
		alg  string
		bits int
	}{
		{"", "ECDSA", 256},
		{KeyECDSAP256, "ECDSA", 256},
		{KeyECDSAP384, "ECDSA", 384},
		{KeyRSA2048, "RSA", 2048},
		{KeyRSA3072, "RSA", 3072},
	}
	for _, tt := range tests {
		t.Run(string(tt.kt), func(t *testing.T) {
			k, err := GenerateKey(tt.kt)
			if err != nil {
				t.Fatal(err)
			}
			alg, bits := PublicKeyInfo(k.Public())
			if alg != tt.alg || bits != tt.bits {
				t.Errorf("got %s-%d, want %s-%d", alg, bits, tt.alg, tt.bits)
			}
		})
	}
	if _, err := GenerateKey("dsa-1024"); err == nil {
		t.Error("unsupported key type accepted")
	}
}

func TestNewCA(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	c := root.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != -1 {
		t.Errorf("root constraints: IsCA=%v valid=%v maxPathLen=%d", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
		t.Errorf("root key usage %v lacks certSign/cRLSign", c.KeyUsage)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("root has no subjectKeyIdentifier")
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("root not self-signed: %v", err)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got < DefaultCAValidity || got > DefaultCAValidity+10*time.Minute {
		t.Errorf("root validity %v", got)
	}
	if len(root.Chain) != 0 {
		t.Errorf("root chain %d, want 0", len(root.Chain))
	}

	inter := newIntermediate(t, root)
	if err := inter.Cert.CheckSignatureFrom(root.Cert); err != nil {
		t.Errorf("intermediate not signed by root: %v", err)
	}
	if inter.Cert.MaxPathLen != 0 || !inter.Cert.MaxPathLenZero {
		t.Errorf("intermediate pathlen %d zero=%v, want 0", inter.Cert.MaxPathLen, inter.Cert.MaxPathLenZero)
	}
	if len(inter.Chain) != 1 || inter.Chain[0] != root.Cert || inter.Root() != root.Cert {
		t.Errorf("intermediate chain wrong")
	}
	if !slices.Equal(inter.Cert.AuthorityKeyId, root.Cert.SubjectKeyId) {
		t.Error("intermediate AKID does not match root SKID")
	}

	if _, err := NewCA(CAOptions{}); err == nil {
		t.Error("CA without common name accepted")
	}
	rsaRoot, err := NewCA(CAOptions{CommonName: "RSA root", KeyType: KeyRSA2048, MaxPathLen: 2, CRLURLs: []string{"http://127.0.0.1/root.crl"}})
	if err != nil {
		t.Fatal(err)
	}
	if rsaRoot.Cert.MaxPathLen != 2 || rsaRoot.Cert.CRLDistributionPoints[0] != "http://127.0.0.1/root.crl" {
		t.Errorf("rsa root: pathlen %d crldp %v", rsaRoot.Cert.MaxPathLen, rsaRoot.Cert.CRLDistributionPoints)
	}
}

func TestIssue(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	tests := []struct {
		name    string
		ca      *CA
		o       IssueOptions
		wantEKU []x509.ExtKeyUsage
		wantKU  x509.KeyUsage
	}{
		{"server ecdsa", root, IssueOptions{CommonName: "radsec.example", DNSNames: []string{"radsec.example"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, Usage: UsageServer},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, x509.KeyUsageDigitalSignature},
		{"server rsa", root, IssueOptions{CommonName: "radsec-rsa", DNSNames: []string{"a.example"}, Usage: UsageServer, KeyType: KeyRSA2048},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		{"client rsa", inter, IssueOptions{CommonName: "laptop-1", Emails: []string{"u@example.com"}, UPNs: []string{"user@corp.example"}, Usage: UsageClient, KeyType: KeyRSA2048},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, x509.KeyUsageDigitalSignature},
		{"both", inter, IssueOptions{CommonName: "edge-1", Usage: UsageServer | UsageClient},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, x509.KeyUsageDigitalSignature},
		{"radsec server with NAI realm", root, IssueOptions{CommonName: "rs1.example.org", DNSNames: []string{"rs1.example.org"}, NAIRealms: []string{"example.org", "*.example.org"}, Usage: UsageServer},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, x509.KeyUsageDigitalSignature},
		{"upn only, empty subject", root, IssueOptions{UPNs: []string{"héllo@corp.example"}, Usage: UsageClient},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, x509.KeyUsageDigitalSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := issue(t, tt.ca, tt.o)
			c := is.Cert
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if !slices.Equal(c.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("EKU %v, want %v", c.ExtKeyUsage, tt.wantEKU)
			}
			if c.KeyUsage != tt.wantKU {
				t.Errorf("KU %v, want %v", c.KeyUsage, tt.wantKU)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 || c.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x: %d bits", c.SerialNumber, c.SerialNumber.BitLen())
			}
			if !publicKeysEqual(c.PublicKey, is.Key.Public()) {
				t.Error("cert public key is not the returned key's")
			}
			sans := CertificateSANs(c)
			if !slices.Equal(sans.DNSNames, tt.o.DNSNames) || !slices.Equal(sans.Emails, tt.o.Emails) || !slices.Equal(sans.UPNs, tt.o.UPNs) || !slices.Equal(sans.NAIRealms, tt.o.NAIRealms) {
				t.Errorf("SANs %+v, want %+v", sans, tt.o)
			}
			if len(sans.IPAddresses) != len(tt.o.IPAddresses) {
				t.Errorf("IPs %v, want %v", sans.IPAddresses, tt.o.IPAddresses)
			}
			// crypto/x509 must still see the standard SANs we encoded.
			if !slices.Equal(c.DNSNames, tt.o.DNSNames) || !slices.Equal(c.EmailAddresses, tt.o.Emails) {
				t.Errorf("x509 view DNS %v email %v", c.DNSNames, c.EmailAddresses)
			}
			if tt.o.CommonName == "" && c.Subject.CommonName != tt.o.UPNs[0] {
				t.Errorf("UPN-only subject CN %q", c.Subject.CommonName)
			}
			if sanCritical(c) != (c.Subject.String() == "") {
				t.Error("SAN criticality wrong (RFC 5280 §4.2.1.6)")
			}
			wantChain := 0
			if tt.ca == inter {
				wantChain = 1
			}
			if len(is.Chain) != wantChain {
				t.Errorf("chain len %d, want %d", len(is.Chain), wantChain)
			}
			usage := x509.ExtKeyUsageClientAuth
			if tt.o.Usage&UsageServer != 0 {
				usage = x509.ExtKeyUsageServerAuth
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool(root.Cert), Intermediates: pool(is.Chain...), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("x509 verify: %v", err)
			}
			if c.NotAfter.After(tt.ca.Cert.NotAfter) {
				t.Error("leaf outlives its CA")
			}
		})
	}
}

func sanCritical(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidExtensionSubjectAltName) {
			return e.Critical
		}
	}
	return false
}

func TestIssueOptions(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	t.Run("given key", func(t *testing.T) {
		k, _ := GenerateKey(KeyECDSAP384)
		is := issue(t, root, IssueOptions{CommonName: "x", Usage: UsageClient, Key: k})
		if is.Key != k || !publicKeysEqual(is.Cert.PublicKey, k.Public()) {
			t.Error("given key not used")
		}
	})
	t.Run("expired window", func(t *testing.T) {
		nb := time.Now().Add(-48 * time.Hour)
		na := time.Now().Add(-24 * time.Hour)
		is := issue(t, root, IssueOptions{CommonName: "old", Usage: UsageClient, NotBefore: nb, NotAfter: na})
		if !is.Cert.NotAfter.Equal(na.UTC().Truncate(time.Second)) {
			t.Errorf("NotAfter %v, want %v", is.Cert.NotAfter, na)
		}
	})
	t.Run("sha1 signature", func(t *testing.T) {
		rsaRoot := newRoot(t, KeyRSA2048)
		is := issue(t, rsaRoot, IssueOptions{CommonName: "weak", Usage: UsageClient, SignatureAlgorithm: x509.SHA1WithRSA})
		if is.Cert.SignatureAlgorithm != x509.SHA1WithRSA {
			t.Errorf("sig alg %v", is.Cert.SignatureAlgorithm)
		}
	})
	t.Run("wrong eku", func(t *testing.T) {
		is := issue(t, root, IssueOptions{CommonName: "cs", ExtraExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
		if !slices.Equal(is.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}) {
			t.Errorf("EKU %v", is.Cert.ExtKeyUsage)
		}
	})
	bad := []struct {
		name string
		o    IssueOptions
	}{
		{"no usage", IssueOptions{CommonName: "x"}},
		{"no name", IssueOptions{Usage: UsageServer}},
		{"bad key type", IssueOptions{CommonName: "x", Usage: UsageServer, KeyType: "rsa-1024"}},
		{"unknown usage", IssueOptions{CommonName: "x", Usage: 8}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := root.Issue(tt.o); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestSignCSR(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	key, _ := GenerateKey(KeyRSA2048)
	csr, _, err := NewCSR(key, CSROptions{CommonName: "edge-7", DNSNames: []string{"edge-7.example"}, UPNs: []string{"edge7@corp"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := root.SignCSR(csr, IssueOptions{Usage: UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "edge-7" || !slices.Equal(c.DNSNames, []string{"edge-7.example"}) {
		t.Errorf("subject %q DNS %v", c.Subject.CommonName, c.DNSNames)
	}
	if got := CertificateSANs(c).UPNs; !slices.Equal(got, []string{"edge7@corp"}) {
		t.Errorf("UPNs %v", got)
	}
	if !publicKeysEqual(c.PublicKey, key.Public()) {
		t.Error("public key not taken from CSR")
	}
	if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("key %T", c.PublicKey)
	}
	// Override names.
	c2, err := root.SignCSR(csr, IssueOptions{CommonName: "other", DNSNames: []string{"o.example"}, Usage: UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	if c2.Subject.CommonName != "other" || !slices.Equal(c2.DNSNames, []string{"o.example"}) {
		t.Errorf("override: %q %v", c2.Subject.CommonName, c2.DNSNames)
	}
	// Tampered CSR.
	bad := *csr
	bad.Signature = append([]byte(nil), csr.Signature...)
	bad.Signature[len(bad.Signature)-1] ^= 1
	if _, err := root.SignCSR(&bad, IssueOptions{Usage: UsageClient}); err == nil {
		t.Error("tampered CSR signed")
	}
}

// TestIssuedTLS: issued server and client certificates complete a mutual
// TLS handshake with chain verification on both sides.
func TestIssuedTLS(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	srv := issue(t, inter, IssueOptions{CommonName: "srv", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer, KeyType: KeyRSA2048})
	cli := issue(t, root, IssueOptions{CommonName: "cli", Usage: UsageClient})
	tc := func(is *Issued) tls.Certificate {
		return tls.Certificate{Certificate: is.DERChain(), PrivateKey: is.Key}
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sconf := &tls.Config{Certificates: []tls.Certificate{tc(srv)}, ClientCAs: pool(root.Cert), ClientAuth: tls.RequireAndVerifyClientCert}
	cconf := &tls.Config{Certificates: []tls.Certificate{tc(cli)}, RootCAs: pool(root.Cert), ServerName: "127.0.0.1"}
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, sconf).Handshake() }()
	if err := tls.Client(b, cconf).Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	_ = ecdsa.PublicKey{}
}
