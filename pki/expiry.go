package pki

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// ExpiryThresholds are the warning points before a certificate expires,
// largest first.
var ExpiryThresholds = [...]time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}

// NamedCert is a certificate with the name operators know it by (config
// key or file path).
type NamedCert struct {
	Name string
	Cert *x509.Certificate
}

// Warning is an expiry warning for one certificate.
type Warning struct {
	Name     string
	Subject  string
	NotAfter time.Time
	// Remaining is negative once expired.
	Remaining time.Duration
	// Threshold is the smallest threshold crossed (30d, 7d or 1d), or 0
	// when expired. Callers warn once per (Name, Threshold).
	Threshold time.Duration
	Expired   bool
	// Level suggests a log level: Error when expired or within a day,
	// Warn within 7 days, Info within 30.
	Level slog.Level
}

// String is a one-line human message.
func (w Warning) String() string {
	if w.Expired {
		return fmt.Sprintf("%s (%s) expired %s", w.Name, w.Subject, w.NotAfter.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s (%s) expires %s, in %s", w.Name, w.Subject, w.NotAfter.Format(time.RFC3339), w.Remaining.Round(time.Minute))
}

// ExpiryWarnings returns a warning for every certificate that expires
// within 30 days of now (or has expired), soonest first.
func ExpiryWarnings(certs []NamedCert, now time.Time) []Warning {
	var out []Warning
	for _, nc := range certs {
		if nc.Cert == nil {
			continue
		}
		rem := nc.Cert.NotAfter.Sub(now)
		w := Warning{Name: nc.Name, Subject: onelineName(nc.Cert.Subject.Names), NotAfter: nc.Cert.NotAfter, Remaining: rem}
		switch {
		case !now.Before(nc.Cert.NotAfter):
			w.Expired, w.Level = true, slog.LevelError
		case rem <= ExpiryThresholds[2]:
			w.Threshold, w.Level = ExpiryThresholds[2], slog.LevelError
		case rem <= ExpiryThresholds[1]:
			w.Threshold, w.Level = ExpiryThresholds[1], slog.LevelWarn
		case rem <= ExpiryThresholds[0]:
			w.Threshold, w.Level = ExpiryThresholds[0], slog.LevelInfo
		default:
			continue
		}
		out = append(out, w)
	}
	slices.SortStableFunc(out, func(a, b Warning) int { return a.NotAfter.Compare(b.NotAfter) })
	return out
}

// CheckKeyPairFiles is what `mxedge check` runs for a configured identity:
// the files load, the key matches (ErrKeyMismatch), and no certificate in
// the file has expired (ErrExpired) or is not yet valid (ErrNotYetValid).
func CheckKeyPairFiles(certPath, keyPath string, now time.Time) error {
	tc, err := LoadKeyPair(certPath, keyPath)
	if err != nil {
		return err
	}
	for _, der := range tc.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("pki: %s: %w", certPath, err)
		}
		if err := CheckValidity(c, now); err != nil {
			return fmt.Errorf("%w (%s)", err, certPath)
		}
	}
	return nil
}

// CheckValidity returns ErrExpired or ErrNotYetValid for cert at now.
func CheckValidity(cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return fmt.Errorf("%w: %q expired %s", ErrExpired, cert.Subject.CommonName, cert.NotAfter.Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%w: %q valid from %s", ErrNotYetValid, cert.Subject.CommonName, cert.NotBefore.Format(time.RFC3339))
	}
	return nil
}
