package pki

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadCA(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	leaf := issue(t, inter, IssueOptions{CommonName: "leaf", Usage: UsageClient})
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	must(t, WriteCertificates(cp, false, inter.Cert, root.Cert))
	must(t, WriteKey(kp, inter.Key, false))
	ca, err := LoadCA(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(inter.Cert) || len(ca.Chain) != 1 || !ca.Root().Equal(root.Cert) {
		t.Error("loaded CA differs")
	}
	is := issue(t, ca, IssueOptions{CommonName: "x", Usage: UsageClient})
	if len(is.Chain) != 1 || !is.Chain[0].Equal(inter.Cert) {
		t.Error("issued chain from loaded CA")
	}
	lp, lk := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "leaf.key")
	must(t, WriteCertificates(lp, false, leaf.Cert))
	must(t, WriteKey(lk, leaf.Key, false))
	if _, err := LoadCA(lp, lk); err == nil {
		t.Error("leaf accepted as CA")
	}
	if _, err := LoadCA(cp, lk); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("mismatch: %v", err)
	}
}

func TestCSRFiles(t *testing.T) {
	key, _ := GenerateKey(KeyECDSAP256)
	_, pemCSR, err := NewCSR(key, CSROptions{CommonName: "edge", Organization: "Org", DNSNames: []string{"edge.example"}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "edge.csr")
	must(t, WriteFileAtomic(p, pemCSR, CertFileMode, false))
	csr, err := LoadCSR(p)
	if err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "edge" || csr.DNSNames[0] != "edge.example" {
		t.Errorf("csr %v %v", csr.Subject, csr.DNSNames)
	}
	os.WriteFile(p, []byte("garbage"), 0o644)
	if _, err := LoadCSR(p); err == nil {
		t.Error("garbage CSR accepted")
	}
	if _, _, err := NewCSR(key, CSROptions{}); err == nil {
		t.Error("CSR without names accepted")
	}
}

func TestCreateCRL(t *testing.T) {
	ca := newRoot(t, KeyRSA2048)
	leaf := issue(t, ca, IssueOptions{CommonName: "x", Usage: UsageClient})
	der, err := ca.CreateCRL(CRLOptions{Number: 3, Revoked: []RevokedCert{{Serial: leaf.Cert.SerialNumber, ReasonCode: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{der, EncodeCRL(der)} {
		crl, err := ParseCRL(in, ca.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if crl.Number.Cmp(big.NewInt(3)) != 0 || len(crl.RevokedCertificateEntries) != 1 || crl.NextUpdate.Sub(crl.ThisUpdate) != 7*24*time.Hour {
			t.Errorf("crl %v %d", crl.Number, len(crl.RevokedCertificateEntries))
		}
	}
	if _, err := ca.CreateCRL(CRLOptions{}); err == nil {
		t.Error("CRL number 0 accepted")
	}
}
