package pki

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNAIRealmOpenSSL: the NAIRealm otherName (RFC 7585 §2.2) we encode is the one openssl
// decodes, and we decode it back.
func TestNAIRealmOpenSSL(t *testing.T) {
	ca, err := NewCA(CAOptions{CommonName: "realm CA"})
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(IssueOptions{CommonName: "rs1.example.org", DNSNames: []string{"rs1.example.org"}, NAIRealms: []string{"example.org"}, Usage: UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	if got := CertificateSANs(is.Cert).NAIRealms; !slices.Equal(got, []string{"example.org"}) {
		t.Fatalf("NAIRealms %v", got)
	}
	path := filepath.Join(t.TempDir(), "rs.pem")
	if err := WriteCertificates(path, true, is.Cert); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(opensslBin(t), "x509", "-in", path, "-noout", "-ext", "subjectAltName").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	// openssl prints "X509v3 Subject Alternative Name: \n    DNS:…, othername: NAIRealm::…".
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	got := strings.TrimSpace(lines[len(lines)-1])
	if want := CertificateSANs(is.Cert).String(); got != want || !strings.Contains(got, "othername: NAIRealm::example.org") {
		t.Fatalf("openssl reads %q, we render %q", got, want)
	}
}
