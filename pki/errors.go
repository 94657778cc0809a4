package pki

import "errors"

// File and key errors.
var (
	// ErrKeyMismatch: the private key does not belong to the certificate's
	// public key.
	ErrKeyMismatch = errors.New("pki: private key does not match certificate")
	// ErrExists: a write would overwrite an existing file and force was not
	// given. It also matches fs.ErrExist.
	ErrExists = errors.New("pki: file exists (use force to overwrite)")
	// ErrNoCertificate: the input holds no certificate.
	ErrNoCertificate = errors.New("pki: no certificate found")
	// ErrNoKey: the input holds no private key.
	ErrNoKey = errors.New("pki: no private key found")
	// ErrEncryptedKey: the key is passphrase-protected; mxedge reads only
	// plain keys (the file mode protects them).
	ErrEncryptedKey = errors.New("pki: encrypted private keys are not supported")
	// ErrUnsupportedKey: the key type is not one mxedge issues or accepts.
	ErrUnsupportedKey = errors.New("pki: unsupported key type")
	// ErrTooLarge: the input exceeds MaxFileSize.
	ErrTooLarge = errors.New("pki: file too large")
)

// Verification errors: Verify returns an error wrapping exactly one of these
// so callers can map it to an event reason (cert-expired, unknown-ca, ...).
var (
	ErrExpired               = errors.New("pki: certificate expired")
	ErrNotYetValid           = errors.New("pki: certificate not yet valid")
	ErrUnknownAuthority      = errors.New("pki: certificate signed by unknown authority")
	ErrWrongUsage            = errors.New("pki: certificate not valid for this usage")
	ErrWeakKey               = errors.New("pki: certificate key too weak")
	ErrWeakSignature         = errors.New("pki: certificate signature algorithm too weak")
	ErrRevoked               = errors.New("pki: certificate revoked")
	ErrRevocationUnavailable = errors.New("pki: revocation status unavailable")
	ErrInvalid               = errors.New("pki: certificate invalid")
)
