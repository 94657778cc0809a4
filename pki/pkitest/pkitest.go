// Package pkitest gives tests and benchmarks a lab PKI (pki/pkilab) in their temporary directory.
// It imports testing, so only test code may import it.
package pkitest

import (
	"testing"

	"mxedge/pki"
	"mxedge/pki/pkilab"
)

// Lab is a generated PKI (pkilab.Lab).
type Lab = pkilab.Lab

// New writes a lab PKI into dir with key type kt (empty: ECDSA P-256).
func New(dir string, kt pki.KeyType) (*Lab, error) { return pkilab.New(dir, kt) }

// Must is New for tests, in tb.TempDir().
func Must(tb testing.TB) *Lab {
	tb.Helper()
	l, err := pkilab.New(tb.TempDir(), "")
	if err != nil {
		tb.Fatalf("pkitest: %v", err)
	}
	return l
}
