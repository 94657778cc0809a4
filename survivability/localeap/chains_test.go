package localeap

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"mxedge/pki"
)

// TestVerifiedChains: a chain verified once is accepted again without pki.Verify while valid,
// revocation is checked on every handshake, and failures or an expired certificate are never
// served from the memo.
func TestVerifiedChains(t *testing.T) {
	l := testLab(t)
	chain := func(name string) []*x509.Certificate { return []*x509.Certificate{l.clients[name].issued.Cert} }
	good := chain(cliECDSA)
	opts := pki.VerifyOptions{Roots: l.roots(), RequireSHA256: true}

	var v verifiedChains
	if err := v.verify(good, opts); err != nil {
		t.Fatalf("first verification: %v", err)
	}
	// The memo answers: with no trust anchor at all the full verification would fail. (In the
	// handler the memo lives in the trust, so its anchors never change under it.)
	bare := opts
	bare.Roots = x509.NewCertPool()
	if err := v.verify(good, bare); err != nil {
		t.Fatalf("second verification not from the memo: %v", err)
	}
	t.Run("revocation checked on a hit", func(t *testing.T) {
		revoked := chain(cliRevoked)
		if err := v.verify(revoked, opts); err != nil { // no checker: accepted and remembered
			t.Fatalf("revoked leaf without a checker: %v", err)
		}
		withCRL := opts
		withCRL.Revocation = l.checker(t)
		if err := v.verify(revoked, withCRL); !errors.Is(err, pki.ErrRevoked) {
			t.Fatalf("revoked leaf from the memo: %v, want ErrRevoked", err)
		}
	})
	t.Run("failures not remembered", func(t *testing.T) {
		other := chain(cliOther)
		for range 2 {
			if err := v.verify(other, opts); !errors.Is(err, pki.ErrUnknownAuthority) {
				t.Fatalf("other CA: %v, want ErrUnknownAuthority", err)
			}
		}
	})
	t.Run("expired after it was remembered", func(t *testing.T) {
		late := opts
		late.Now = func() time.Time { return good[0].NotAfter.Add(time.Hour) }
		if err := v.verify(good, late); !errors.Is(err, pki.ErrExpired) {
			t.Fatalf("past NotAfter: %v, want ErrExpired", err)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		var b verifiedChains
		for i := range maxVerifiedChains + 10 {
			var k [32]byte
			k[0], k[1] = byte(i), byte(i>>8)
			b.mu.Lock()
			if b.m == nil || len(b.m) >= maxVerifiedChains {
				b.m = map[[32]byte][]*x509.Certificate{}
			}
			b.m[k] = good
			b.mu.Unlock()
		}
		if err := b.verify(good, opts); err != nil || len(b.m) > maxVerifiedChains {
			t.Fatalf("%v, %d entries", err, len(b.m))
		}
	})
}
