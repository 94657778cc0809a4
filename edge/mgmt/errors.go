package mgmt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// Registration and API errors. Every error the Client, Register and the Syncer return wraps exactly
// one of these, so the CLI maps it to an exit code with errors.Is and the daemon picks a log level.
var (
	// ErrRegistered: the edge already has a regfile and force was not given.
	ErrRegistered = errors.New("mgmt: edge already registered (use --force to register again)")
	// ErrInvalidCode: the controller does not know the registration code.
	ErrInvalidCode = errors.New("mgmt: registration code is invalid")
	// ErrExpiredCode: the registration code is past its validity.
	ErrExpiredCode = errors.New("mgmt: registration code has expired")
	// ErrUsedCode: the registration code was already used.
	ErrUsedCode = errors.New("mgmt: registration code was already used")
	// ErrUnreachable: no HTTP exchange took place (DNS, connect, timeout, connection reset).
	ErrUnreachable = errors.New("mgmt: cloud unreachable")
	// ErrTLS: the TLS handshake failed (unknown authority, name mismatch, expired server
	// certificate, client certificate refused).
	ErrTLS = errors.New("mgmt: tls failure")
	// ErrClockSkew: the edge's clock disagrees with the controller's (its certificate is not yet
	// valid here, or its Date header is more than MaxClockSkew away).
	ErrClockSkew = errors.New("mgmt: clock skew")
	// ErrConfigRejected: the configuration the controller sent does not validate.
	ErrConfigRejected = errors.New("mgmt: configuration rejected")
	// ErrCertificatesRejected: the server certificates the controller sent fail validation (or
	// the reload with them failed): the last good files keep serving.
	ErrCertificatesRejected = errors.New("mgmt: server certificates rejected")
	// ErrUnauthorized: the controller refused the edge's client certificate (401/403 after
	// registration): the edge must be registered again.
	ErrUnauthorized = errors.New("mgmt: edge not authorized")
	// ErrProtocol: the controller answered something this API version does not define.
	ErrProtocol = errors.New("mgmt: unexpected response")
)

// APIError is a non-2xx answer from the controller. It unwraps to the sentinel for its code.
type APIError struct {
	Status  int    // HTTP status
	Code    string // ErrorBody.Code
	Message string // ErrorBody.Message
}

// Error leads with the sentinel's text, so the operator reads "registration code has expired"
// before the controller's own words.
func (e *APIError) Error() string {
	s := fmt.Sprintf("controller answered %d %s", e.Status, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return e.Unwrap().Error() + " (" + s + ")"
}

// Unwrap maps the documented codes to sentinels; anything else is ErrProtocol (4xx) or
// ErrUnreachable (5xx: the controller is there but cannot serve, which the Syncer treats like an
// outage and retries with backoff).
func (e *APIError) Unwrap() error {
	switch e.Code {
	case CodeInvalidCode:
		return ErrInvalidCode
	case CodeExpiredCode:
		return ErrExpiredCode
	case CodeUsedCode:
		return ErrUsedCode
	case CodeUnauthenticated, CodeForbidden:
		return ErrUnauthorized
	}
	if e.Status >= 500 {
		return ErrUnreachable
	}
	return ErrProtocol
}

// classify wraps a transport error from http.Client.Do in the matching sentinel. now is the
// edge's clock, used to tell a clock behind the controller's from a bad certificate.
func classify(op string, err error, now time.Time) error {
	var certInvalid x509.CertificateInvalidError
	if errors.As(err, &certInvalid) && certInvalid.Reason == x509.Expired && certInvalid.Cert != nil {
		c := certInvalid.Cert
		if now.Before(c.NotBefore) {
			// Controllers do not serve certificates from the future: our clock is behind.
			return fmt.Errorf("%s: %w: the controller's certificate is valid from %s but the local clock says %s; fix the clock (NTP) and retry",
				op, ErrClockSkew, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		// Either the certificate really expired or our clock is far ahead: say both.
		return fmt.Errorf("%s: %w: the controller's certificate expired at %s (local clock %s; if that is wrong, fix the clock): %v",
			op, ErrTLS, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), err)
	}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		recordHd tls.RecordHeaderError
	)
	if errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &verify) ||
		errors.As(err, &certInvalid) || errors.As(err, &alert) || errors.As(err, &recordHd) {
		return fmt.Errorf("%s: %w: %v", op, ErrTLS, unwrapURL(err))
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return fmt.Errorf("%s: %w: %v", op, ErrTLS, unwrapURL(err))
	}
	return fmt.Errorf("%s: %w: %v", op, ErrUnreachable, unwrapURL(err))
}

// unwrapURL drops net/http's `Get "https://...": ` prefix when the operand is already in op.
func unwrapURL(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}
