package localeap

import (
	"crypto/x509"
	"testing"

	"mxedge/pki"
)

// TestCertificateType: a rejected certificate's event type by its failure and by what it is
// issued to, in the Mist guide's names.
func TestCertificateType(t *testing.T) {
	l := testLab(t)
	issue := func(o pki.IssueOptions) *x509.Certificate {
		t.Helper()
		o.Usage = pki.UsageClient
		iss, err := l.root.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		return iss.Cert
	}
	user := issue(pki.IssueOptions{CommonName: "alice", UPNs: []string{"alice@corp.example.test"}})
	mail := issue(pki.IssueOptions{CommonName: "alice", Emails: []string{"alice@example.test"}})
	machine := issue(pki.IssueOptions{CommonName: "laptop9", DNSNames: []string{"laptop9.corp.example.test"}})
	host := issue(pki.IssueOptions{CommonName: "host/laptop9.corp.example.test"})
	plain := issue(pki.IssueOptions{CommonName: "dave"})
	tests := []struct {
		name   string
		leaf   *x509.Certificate
		reason string
		want   string
	}{
		{"plain expired", plain, pki.ReasonExpired, "NAC Client Certificate Expired"},
		{"plain revoked", plain, pki.ReasonRevoked, "NAC Client Cert Revoked"},
		{"plain unknown ca", plain, pki.ReasonUnknownCA, "NAC Client Certificate Validation Failure"},
		{"no certificate", nil, pki.ReasonInvalid, "NAC Client Certificate Validation Failure"},
		{"upn expired", user, pki.ReasonExpired, "NAC User Certificate Expired"},
		{"upn revoked", user, pki.ReasonRevoked, "NAC User Certificate Revoked"},
		{"email wrong eku", mail, pki.ReasonWrongEKU, "NAC User Certificate Validation Failure"},
		{"dns expired", machine, pki.ReasonExpired, "NAC Machine Certificate Expired"},
		{"dns revoked", machine, pki.ReasonRevoked, "NAC Machine Certificate Revoked"},
		{"dns not yet valid", machine, pki.ReasonNotYetValid, "NAC Machine Certificate Validation Failure"},
		{"host cn revocation unavailable", host, pki.ReasonRevocationUnavailable, "NAC Machine Certificate Validation Failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := certificateType(tt.leaf, tt.reason); got != tt.want {
				t.Errorf("certificateType = %q, want %q", got, tt.want)
			}
		})
	}
}
