package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

// newRoot makes a root CA for tests.
func newRoot(t testing.TB, kt KeyType) *CA {
	t.Helper()
	ca, err := NewCA(CAOptions{CommonName: "Test Root " + string(kt), Organization: "mxedge test", KeyType: kt})
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// newIntermediate makes an intermediate under parent.
func newIntermediate(t testing.TB, parent *CA) *CA {
	t.Helper()
	ca, err := NewCA(CAOptions{CommonName: "Test Intermediate", Parent: parent})
	if err != nil {
		t.Fatalf("NewCA intermediate: %v", err)
	}
	return ca
}

func issue(t testing.TB, ca *CA, o IssueOptions) *Issued {
	t.Helper()
	is, err := ca.Issue(o)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return is
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// fixedClock returns a settable clock.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }
