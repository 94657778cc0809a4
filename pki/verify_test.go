package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// opensslVerifyReason runs `openssl verify` and maps its error code to our
// event reasons (X509_V_ERR_* from openssl/x509_vfy.h).
func opensslVerifyReason(t testing.TB, caFile, untrusted, certFile, purpose string) string {
	t.Helper()
	args := []string{"verify", "-CAfile", caFile, "-purpose", purpose, "-auth_level", "2"}
	if untrusted != "" {
		args = append(args, "-untrusted", untrusted)
	}
	out, err := exec.Command(opensslBin(t), append(args, certFile)...).CombinedOutput()
	if err == nil {
		return ReasonOK
	}
	m := regexp.MustCompile(`error (\d+) at`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	code, _ := strconv.Atoi(string(m[1]))
	switch code {
	case 10:
		return ReasonExpired
	case 9:
		return ReasonNotYetValid
	case 2, 18, 19, 20, 21:
		return ReasonUnknownCA
	case 26:
		return ReasonWrongEKU
	case 66, 67:
		return ReasonWeakKey
	case 68:
		return ReasonWeakSignature
	case 23:
		return ReasonRevoked
	}
	return "openssl-" + string(m[1])
}

func TestVerifyMatchesOpenSSL(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	other := newRoot(t, KeyECDSAP256) // same name, different key
	rsaRoot := newRoot(t, KeyRSA2048)
	now := time.Now()
	k1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ca      *CA
		o       IssueOptions
		usage   Usage
		want    string
		wantErr error
	}{
		{"valid client", root, IssueOptions{CommonName: "c", Usage: UsageClient}, UsageClient, ReasonOK, nil},
		{"valid client via intermediate", inter, IssueOptions{CommonName: "c", Usage: UsageClient, KeyType: KeyRSA2048}, UsageClient, ReasonOK, nil},
		{"valid server", inter, IssueOptions{CommonName: "s", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer}, UsageServer, ReasonOK, nil},
		{"dual usage as client", root, IssueOptions{CommonName: "d", Usage: UsageServer | UsageClient}, UsageClient, ReasonOK, nil},
		{"expired", root, IssueOptions{CommonName: "e", Usage: UsageClient, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, UsageClient, ReasonExpired, ErrExpired},
		{"not yet valid", root, IssueOptions{CommonName: "n", Usage: UsageClient, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}, UsageClient, ReasonNotYetValid, ErrNotYetValid},
		{"other CA", other, IssueOptions{CommonName: "o", Usage: UsageClient}, UsageClient, ReasonUnknownCA, ErrUnknownAuthority},
		{"server cert as client", root, IssueOptions{CommonName: "w", Usage: UsageServer}, UsageClient, ReasonWrongEKU, ErrWrongUsage},
		{"client cert as server", root, IssueOptions{CommonName: "w", Usage: UsageClient}, UsageServer, ReasonWrongEKU, ErrWrongUsage},
		{"code signing only", root, IssueOptions{CommonName: "cs", ExtraExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, UsageClient, ReasonWrongEKU, ErrWrongUsage},
		{"rsa 1024", root, IssueOptions{CommonName: "k", Usage: UsageClient, Key: k1024}, UsageClient, ReasonWeakKey, ErrWeakKey},
		{"sha1 signature", rsaRoot, IssueOptions{CommonName: "h", Usage: UsageClient, SignatureAlgorithm: x509.SHA1WithRSA}, UsageClient, ReasonWeakSignature, ErrWeakSignature},
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	must(t, WriteCertificates(caFile, false, root.Cert, rsaRoot.Cert))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := issue(t, tt.ca, tt.o)
			certFile := filepath.Join(dir, strconv.Itoa(i)+".pem")
			must(t, WriteCertificates(certFile, false, is.Cert))
			untrusted := ""
			if len(is.Chain) > 0 {
				untrusted = filepath.Join(dir, strconv.Itoa(i)+"-chain.pem")
				must(t, WriteCertificates(untrusted, false, is.Chain...))
			}
			purpose := "sslclient"
			if tt.usage == UsageServer {
				purpose = "sslserver"
			}
			got := opensslVerifyReason(t, caFile, untrusted, certFile, purpose)
			if got != tt.want {
				t.Errorf("openssl verdict %s, want %s", got, tt.want)
			}
			v, err := Verify(append([]*x509.Certificate{is.Cert}, is.Chain...), VerifyOptions{Roots: pool(root.Cert, rsaRoot.Cert), Usage: tt.usage, RequireSHA256: true})
			if v.Reason != got {
				t.Errorf("pki verdict %s (%v), openssl %s", v.Reason, err, got)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err %v, want %v", err, tt.wantErr)
			}
			if err == nil && (len(v.Chain) < 2 || !v.Chain[len(v.Chain)-1].Equal(tt.ca.Root())) {
				t.Errorf("verified chain wrong: %d certs", len(v.Chain))
			}
		})
	}
}

func TestVerifyOptions(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	leaf := issue(t, inter, IssueOptions{CommonName: "c", DNSNames: []string{"radsec.example"}, Usage: UsageServer})
	roots := pool(root.Cert)
	chain := []*x509.Certificate{leaf.Cert, inter.Cert}
	tests := []struct {
		name string
		c    []*x509.Certificate
		o    VerifyOptions
		want error
	}{
		{"ok", chain, VerifyOptions{Roots: roots, Usage: UsageServer, DNSName: "radsec.example"}, nil},
		{"intermediate from pool", chain[:1], VerifyOptions{Roots: roots, Intermediates: pool(inter.Cert), Usage: UsageServer}, nil},
		{"missing intermediate", chain[:1], VerifyOptions{Roots: roots, Usage: UsageServer}, ErrUnknownAuthority},
		{"no roots", chain, VerifyOptions{Usage: UsageServer}, ErrUnknownAuthority},
		{"name mismatch", chain, VerifyOptions{Roots: roots, Usage: UsageServer, DNSName: "evil.example"}, ErrNameMismatch},
		{"expired within skew", chain, VerifyOptions{Roots: roots, Usage: UsageServer, ClockSkew: time.Hour,
			Now: func() time.Time { return leaf.Cert.NotAfter.Add(30 * time.Minute) }}, nil},
		{"expired beyond skew", chain, VerifyOptions{Roots: roots, Usage: UsageServer, ClockSkew: time.Minute,
			Now: func() time.Time { return leaf.Cert.NotAfter.Add(30 * time.Minute) }}, ErrExpired},
		{"p256 below min 384", chain, VerifyOptions{Roots: roots, Usage: UsageServer, MinECDSABits: 384}, ErrWeakKey},
		{"empty", nil, VerifyOptions{Roots: roots}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Verify(tt.c, tt.o)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if v.Reason != Reason(tt.want) || v.OK() != (tt.want == nil) {
				t.Errorf("verdict %q ok=%v", v.Reason, v.OK())
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	root := newRoot(b, KeyECDSAP256)
	inter := newIntermediate(b, root)
	leaf := issue(b, inter, IssueOptions{CommonName: "c", Usage: UsageClient})
	chain := []*x509.Certificate{leaf.Cert, inter.Cert}
	o := VerifyOptions{Roots: pool(root.Cert), Usage: UsageClient}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(chain, o); err != nil {
			b.Fatal(err)
		}
	}
}
