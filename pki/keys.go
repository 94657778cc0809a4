package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
)

// KeyType names a key algorithm and size mxedge generates.
type KeyType string

// Key types. ECDSA P-256 is the default: small, fast, accepted by every
// RADIUS/TLS peer we test against (FreeRADIUS, radsecproxy, wpa_supplicant).
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// DefaultKeyType is used when a KeyType is empty.
const DefaultKeyType = KeyECDSAP256

// KeyTypes lists the supported key types, for CLI help and validation.
func KeyTypes() []KeyType {
	return []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA3072, KeyRSA4096}
}

// Validate reports whether t is a supported key type (empty is valid: default).
func (t KeyType) Validate() error {
	if t == "" {
		return nil
	}
	for _, k := range KeyTypes() {
		if t == k {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrUnsupportedKey, string(t))
}

// GenerateKey creates a new private key of type t (empty = DefaultKeyType).
func GenerateKey(t KeyType) (crypto.Signer, error) {
	return generateKey(rand.Reader, t)
}

func generateKey(r io.Reader, t KeyType) (crypto.Signer, error) {
	if t == "" {
		t = DefaultKeyType
	}
	switch t {
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), r)
	case KeyRSA2048:
		return rsa.GenerateKey(r, 2048)
	case KeyRSA3072:
		return rsa.GenerateKey(r, 3072)
	case KeyRSA4096:
		return rsa.GenerateKey(r, 4096)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedKey, string(t))
}

// PublicKeyInfo returns the algorithm name ("RSA", "ECDSA", "Ed25519") and
// size in bits of a public key; bits is 0 for an unknown key.
func PublicKeyInfo(pub crypto.PublicKey) (algorithm string, bits int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return "unknown", 0
}

// publicKeysEqual compares two public keys by value.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// checkSigner rejects key types mxedge does not handle.
func checkSigner(k crypto.Signer) error {
	switch k.Public().(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: %T", ErrUnsupportedKey, k.Public())
}
