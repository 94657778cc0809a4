package localeap

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"

	"mxedge/pki"
)

// maxVerifiedChains bounds the memo of verified chains; when it is full it starts over.
const maxVerifiedChains = 4096

// verifiedChains remembers the client certificate chains pki.Verify accepted under one trust (a
// reload makes a new one), keyed by the certificates as presented, byte for byte. Verifying the
// chain (building it, checking the CA's signature on the leaf, key usage and strength) was a sixth
// of mxedge's CPU per full EAP-TLS authentication in a profile (bench/BenchmarkEAPInProcess), and
// its outcome depends only on those bytes, the trust and the time. So a chain seen before is
// accepted again without it while every certificate of the verified chain is within its validity
// period; revocation is still checked on every handshake, as is the client's proof of its key
// (CertificateVerify, in crypto/tls). Failures are not remembered.
type verifiedChains struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte][]*x509.Certificate
}

func chainKey(chain []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	for _, c := range chain {
		var n [4]byte
		l := len(c.Raw)
		n[0], n[1], n[2], n[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// verify is pki.Verify(chain, o), remembered (see verifiedChains).
func (v *verifiedChains) verify(chain []*x509.Certificate, o pki.VerifyOptions) error {
	if len(chain) == 0 || chain[0] == nil {
		_, err := pki.Verify(chain, o)
		return err
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	k := chainKey(chain)
	v.mu.Lock()
	verified, ok := v.m[k]
	v.mu.Unlock()
	if ok && within(verified, now) {
		if o.Revocation != nil {
			for i := 0; i+1 < len(verified); i++ {
				if err := o.Revocation.Check(verified[i], verified[i+1]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	vd, err := pki.Verify(chain, o)
	if err != nil {
		return err
	}
	v.mu.Lock()
	if v.m == nil || len(v.m) >= maxVerifiedChains {
		v.m = make(map[[sha256.Size]byte][]*x509.Certificate)
	}
	v.m[k] = vd.Chain
	v.mu.Unlock()
	return nil
}

// within reports whether every certificate of chain is valid at now (RFC 5280 §4.1.2.5).
func within(chain []*x509.Certificate, now time.Time) bool {
	for _, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return false
		}
	}
	return true
}
