package eaptls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"
)

// Test PKI built with crypto/x509 directly (the pki package is a sibling
// leaf and may not be imported).

type keyAlg int

const (
	algECDSA keyAlg = iota
	algRSA
)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	// chain above cert, excluding the root: intermediates to send with a
	// leaf issued by this CA.
	chain []*x509.Certificate
	root  *x509.Certificate // trust anchor of this hierarchy
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newKey(tb testing.TB, alg keyAlg) crypto.Signer {
	tb.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case algRSA:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func issue(tb testing.TB, tmpl *x509.Certificate, parent *testCA, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	tmpl.SerialNumber = nextSerial()
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func newRootCA(tb testing.TB, name string) *testCA {
	tb.Helper()
	k := newKey(tb, algECDSA)
	c := issue(tb, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, k)
	return &testCA{cert: c, key: k}
}

func (ca *testCA) intermediate(tb testing.TB, name string) *testCA {
	tb.Helper()
	k := newKey(tb, algECDSA)
	c := issue(tb, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, ca, k)
	chain := append([]*x509.Certificate{c}, ca.chain...)
	return &testCA{cert: c, key: k, chain: chain}
}

// leaf issues an end-entity certificate and returns it as a tls.Certificate
// with the intermediates appended, as it goes on the wire.
func (ca *testCA) leaf(tb testing.TB, cn string, alg keyAlg, eku x509.ExtKeyUsage) tls.Certificate {
	tb.Helper()
	k := newKey(tb, alg)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    []string{cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}
	if alg == algRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	c := issue(tb, tmpl, ca, k)
	out := tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
	for _, ic := range ca.chain {
		out.Certificate = append(out.Certificate, ic.Raw)
	}
	return out
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// testPKI is shared by the tests of this package: generating RSA keys is
// slow enough to do once.
type testPKI struct {
	root          *testCA
	deep          *testCA // root → int1 → int2
	otherRoot     *testCA
	serverEC      tls.Certificate
	serverDeep    tls.Certificate // issued by deep, chain of 3 sent
	clientEC      tls.Certificate
	clientRSA     tls.Certificate
	clientDeep    tls.Certificate
	clientRSADeep tls.Certificate
	clientOther   tls.Certificate
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

func loadPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() {
		root := newRootCA(tb, "mxedge test root")
		root.root = root.cert
		int1 := root.intermediate(tb, "mxedge test intermediate 1")
		int1.root = root.cert
		int2 := int1.intermediate(tb, "mxedge test intermediate 2")
		int2.root = root.cert
		other := newRootCA(tb, "other root")
		other.root = other.cert
		p := &testPKI{root: root, deep: int2, otherRoot: other}
		p.serverEC = root.leaf(tb, "radius.example.org", algECDSA, x509.ExtKeyUsageServerAuth)
		p.serverDeep = int2.leaf(tb, "radius.example.org", algRSA, x509.ExtKeyUsageServerAuth)
		p.clientEC = root.leaf(tb, "alice@example.org", algECDSA, x509.ExtKeyUsageClientAuth)
		p.clientRSA = root.leaf(tb, "bob@example.org", algRSA, x509.ExtKeyUsageClientAuth)
		p.clientDeep = int2.leaf(tb, "carol@example.org", algECDSA, x509.ExtKeyUsageClientAuth)
		p.clientRSADeep = int2.leaf(tb, "dave@example.org", algRSA, x509.ExtKeyUsageClientAuth)
		p.clientOther = other.leaf(tb, "mallory@example.org", algECDSA, x509.ExtKeyUsageClientAuth)
		pkiVal = p
	})
	if pkiVal == nil {
		tb.Fatal("test pki generation failed")
	}
	return pkiVal
}

// verifyAgainst returns a VerifyPeer that chains to ca's root with the
// clientAuth EKU: a stand-in for the lead's PKI check.
func verifyAgainst(ca *testCA) func([]*x509.Certificate) error {
	roots := ca.pool()
	return func(chain []*x509.Certificate) error {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		return err
	}
}
