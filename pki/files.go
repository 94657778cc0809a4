package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MaxFileSize caps what Load* read: a CA bundle or CRL larger than this is
// a mistake, not input.
const MaxFileSize = 16 << 20

// File modes: keys are private to the service user.
const (
	CertFileMode fs.FileMode = 0o644
	KeyFileMode  fs.FileMode = 0o600
)

// PEM block types.
const (
	pemCertificate  = "CERTIFICATE"
	pemPKCS8        = "PRIVATE KEY"
	pemPKCS1        = "RSA PRIVATE KEY"
	pemSEC1         = "EC PRIVATE KEY"
	pemEncrypted    = "ENCRYPTED PRIVATE KEY"
	pemCSR          = "CERTIFICATE REQUEST"
	pemCRL          = "X509 CRL"
	pemLegacyHeader = "Proc-Type"
)

// EncodeCertificates returns certs as concatenated PEM.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: pemCertificate, Bytes: c.Raw})
	}
	return b.Bytes()
}

// EncodeKey returns key as PKCS#8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der}), nil
}

// WriteCertificates writes certs as PEM to path, atomically, mode 0644.
// It refuses to overwrite an existing file unless force (ErrExists).
func WriteCertificates(path string, force bool, certs ...*x509.Certificate) error {
	if len(certs) == 0 {
		return ErrNoCertificate
	}
	return WriteFileAtomic(path, EncodeCertificates(certs...), CertFileMode, force)
}

// WriteKey writes key as PKCS#8 PEM to path, atomically, mode 0600.
// It refuses to overwrite an existing file unless force (ErrExists).
func WriteKey(path string, key crypto.Signer, force bool) error {
	data, err := EncodeKey(key)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, data, KeyFileMode, force)
}

// existsError matches both ErrExists and fs.ErrExist.
type existsError struct{ path string }

func (e *existsError) Error() string { return ErrExists.Error() + ": " + e.path }
func (e *existsError) Is(target error) bool {
	return target == ErrExists || target == fs.ErrExist
}

// WriteFileAtomic writes data to a temp file in path's directory with mode,
// fsyncs it, and moves it into place so readers see the old or the new file,
// never a torn one. Without force, the final step is link(2), which fails
// atomically if path exists, so a concurrent writer cannot be clobbered.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode, force bool) (err error) {
	dir := filepath.Dir(path)
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return &existsError{path}
		}
	}
	// CreateTemp makes the file 0600 before any byte is written: a key is
	// never readable by others, not even briefly.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if force {
		if err = os.Rename(tmp, path); err != nil {
			return fmt.Errorf("pki: write %s: %w", path, err)
		}
	} else {
		if err = os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				err = &existsError{path}
				return err
			}
			return fmt.Errorf("pki: write %s: %w", path, err)
		}
		_ = os.Remove(tmp)
	}
	// Persist the directory entry too.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// readFileCapped reads at most MaxFileSize bytes.
func readFileCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %s", ErrTooLarge, path)
	}
	return data, nil
}

// LoadCertificates reads certificates from a PEM (any number of
// CERTIFICATE blocks; other blocks are skipped) or DER file.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readFileCapped(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return certs, nil
}

// isPEM reports whether data looks like PEM rather than DER. DER always
// starts with a SEQUENCE tag (0x30); PEM has a BEGIN line.
func isPEM(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN "))
}

// ParseCertificates decodes PEM or DER certificates.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if !isPEM(data) {
		if len(data) == 0 {
			return nil, ErrNoCertificate
		}
		certs, err := x509.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("pki: parse DER certificate: %w", err)
		}
		if len(certs) == 0 {
			return nil, ErrNoCertificate
		}
		return certs, nil
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	return certs, nil
}

// LoadKey reads a private key from PEM or DER: PKCS#8, PKCS#1 (RSA) or
// SEC1 (EC). Encrypted keys are refused with ErrEncryptedKey.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := readFileCapped(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// ParseKey decodes a private key from PEM or DER (PKCS#8, PKCS#1, SEC1).
// In PEM, the first key block is used; certificates and EC PARAMETERS
// blocks around it are skipped, so a combined cert+key file works.
func ParseKey(data []byte) (crypto.Signer, error) {
	if !isPEM(data) {
		if len(data) == 0 {
			return nil, ErrNoKey
		}
		return parseDERKey(data, "")
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, ErrNoKey
		}
		switch b.Type {
		case pemEncrypted:
			return nil, ErrEncryptedKey
		case pemPKCS8, pemPKCS1, pemSEC1:
			if _, ok := b.Headers[pemLegacyHeader]; ok {
				return nil, ErrEncryptedKey // RFC 1421 "Proc-Type: 4,ENCRYPTED"
			}
			return parseDERKey(b.Bytes, b.Type)
		}
	}
}

// parseDERKey tries the form the PEM type names, or all forms for DER.
func parseDERKey(der []byte, typ string) (crypto.Signer, error) {
	var key any
	var err error
	switch typ {
	case pemPKCS8:
		key, err = x509.ParsePKCS8PrivateKey(der)
	case pemPKCS1:
		key, err = x509.ParsePKCS1PrivateKey(der)
	case pemSEC1:
		key, err = x509.ParseECPrivateKey(der)
	default:
		if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
				key, err = x509.ParseECPrivateKey(der)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pki: parse private key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
}

// LoadKeyPair loads a certificate chain (leaf first, then intermediates)
// and its private key. A key that does not match the leaf is ErrKeyMismatch.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := LoadKey(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	return KeyPair(certs, key, certPath, keyPath)
}

// KeyPair builds a tls.Certificate from a chain and key after checking that
// they match. Names are only used in the error message.
func KeyPair(certs []*x509.Certificate, key crypto.Signer, certName, keyName string) (tls.Certificate, error) {
	if len(certs) == 0 {
		return tls.Certificate{}, ErrNoCertificate
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return tls.Certificate{}, fmt.Errorf("%w: key %s is not the key of certificate %s (subject %q)",
			ErrKeyMismatch, keyName, certName, certs[0].Subject.String())
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}
