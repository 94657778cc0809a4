package proxy

import (
	"slices"
	"testing"

	"mxedge/pki"
	"mxedge/pki/pkitest"
)

func TestMatchRealm(t *testing.T) {
	tests := []struct {
		pattern, realm string
		want           bool
	}{
		{"example.org", "example.org", true},
		{"Example.ORG", "example.org.", true},
		{"example.org", "a.example.org", false},
		{"*.example.org", "a.example.org", true},
		{"*.example.org", "example.org", false},
		{"*.example.org", "a.b.example.org", false},
		{"*.example.org", ".example.org", false},
		{"*.*.org", "a.b.org", false},
		{"a*.example.org", "ab.example.org", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := matchRealm(tt.pattern, tt.realm); got != tt.want {
			t.Errorf("matchRealm(%q, %q) = %v, want %v", tt.pattern, tt.realm, got, tt.want)
		}
	}
}

// TestNAIRealmsRoundTrip: what pki encodes (RFC 7585 §2.2 otherName) is what the proxy reads,
// among the other SAN forms.
func TestNAIRealmsRoundTrip(t *testing.T) {
	lab := pkitest.Must(t)
	is, err := lab.CA.Issue(pki.IssueOptions{CommonName: "rs", DNSNames: []string{"rs.example.org"}, UPNs: []string{"u@corp"},
		NAIRealms: []string{"example.org", "*.example.net"}, Usage: pki.UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	got, err := NAIRealms(is.Cert)
	if err != nil || !slices.Equal(got, []string{"example.org", "*.example.net"}) {
		t.Fatalf("NAIRealms = %q, %v", got, err)
	}
	if got, err := NAIRealms(lab.Server.Cert); err != nil || len(got) != 0 {
		t.Fatalf("no NAIRealm: %q %v", got, err)
	}
}

func FuzzParseNAIRealms(f *testing.F) {
	lab := pkitest.Must(f)
	is, err := lab.CA.Issue(pki.IssueOptions{CommonName: "rs", NAIRealms: []string{"example.org"}, Usage: pki.UsageServer})
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range is.Cert.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			f.Add(e.Value)
		}
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		names, err := parseNAIRealms(der)
		for _, n := range names {
			if err == nil && (n == "" || len(n) > 255) {
				t.Fatalf("accepted %q", n)
			}
		}
	})
}
