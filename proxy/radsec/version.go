package radsec

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
)

// ALPN names of the RADIUS versions a RadSec connection can carry (RFC 9765, "ALPN Name for
// RADIUS/1.1" and "Configuration of ALPN for RADIUS/1.1").
const (
	ALPN10 = "radius/1.0" // historic RADIUS/TLS (RFC 6614)
	ALPN11 = "radius/1.1" // RADIUS/1.1: Token, no MD5, attributes in the clear
)

// Version is which RADIUS versions a RadSec client or server accepts (RFC 9765's "Version"
// configuration flag).
type Version uint8

// Versions.
const (
	// VersionAllow offers (client) or accepts (server) both and prefers RADIUS/1.1: the RFC's
	// "1.0, 1.1", the default it mandates. A peer that sends no ALPN, or whose server answers
	// none, gets historic RADIUS/TLS.
	VersionAllow Version = iota
	// VersionOff sends and answers no ALPN at all: exactly what mxedge did before RADIUS/1.1
	// (the RFC's unset flag).
	VersionOff
	// VersionRequire offers or accepts RADIUS/1.1 only; a connection that did not negotiate it
	// is closed (ErrVersionRequired).
	VersionRequire
)

// Errors of version negotiation.
var (
	// ErrVersionRequired: the connection did not negotiate RADIUS/1.1 and the configuration
	// requires it.
	ErrVersionRequired = errors.New("radsec: RADIUS/1.1 required and not negotiated")
	// ErrV11TLS12: RADIUS/1.1 was negotiated over TLS 1.2; RFC 9765 requires TLS 1.3.
	ErrV11TLS12 = errors.New("radsec: RADIUS/1.1 negotiated over TLS 1.2")
)

// ParseVersion reads a configuration value: "allow", "off" or "require".
func ParseVersion(s string) (Version, error) {
	switch s {
	case "allow":
		return VersionAllow, nil
	case "off":
		return VersionOff, nil
	case "require":
		return VersionRequire, nil
	}
	return 0, fmt.Errorf("radsec: radius version %q is not one of allow, off, require", s)
}

func (v Version) String() string {
	switch v {
	case VersionOff:
		return "off"
	case VersionRequire:
		return "require"
	}
	return "allow"
}

// NextProtos is the ALPN list of v, most preferred first: a client offers it, a server picks the
// first entry the client also offered (crypto/tls follows the server's order).
func (v Version) NextProtos() []string {
	switch v {
	case VersionOff:
		return nil
	case VersionRequire:
		return []string{ALPN11}
	}
	return []string{ALPN11, ALPN10}
}

// Apply sets cfg's ALPN list for v, keeping any other protocols it lists after the RADIUS ones.
func (v Version) Apply(cfg *tls.Config) {
	others := slices.DeleteFunc(slices.Clone(cfg.NextProtos), func(p string) bool { return p == ALPN10 || p == ALPN11 })
	cfg.NextProtos = append(v.NextProtos(), others...)
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = nil
	}
}

// VersionOf reads back the Version a configuration's ALPN list stands for.
func VersionOf(cfg *tls.Config) Version {
	if cfg == nil {
		return VersionOff
	}
	has11, has10 := slices.Contains(cfg.NextProtos, ALPN11), slices.Contains(cfg.NextProtos, ALPN10)
	switch {
	case has11 && has10:
		return VersionAllow
	case has11:
		return VersionRequire
	}
	return VersionOff
}

// Is11 reports whether a completed handshake negotiated RADIUS/1.1.
func Is11(cs tls.ConnectionState) bool { return cs.NegotiatedProtocol == ALPN11 }

// VersionName is what a connection carries, for status and metrics: "1.1" or "1.0".
func VersionName(cs tls.ConnectionState) string {
	if Is11(cs) {
		return "1.1"
	}
	return "1.0"
}

// CheckNegotiated reports whether a connection whose handshake (made with a configuration of
// Version v) gave cs may carry RADIUS: with VersionRequire it must have negotiated RADIUS/1.1
// (RFC 9765: the client closes when the server answers no ALPN; the server closes when the client
// sent none), and RADIUS/1.1 needs TLS 1.3 (RFC 9765, "Miscellaneous Items").
func CheckNegotiated(v Version, cs tls.ConnectionState) error {
	if Is11(cs) {
		if cs.Version < tls.VersionTLS13 {
			return ErrV11TLS12
		}
		return nil
	}
	if v == VersionRequire {
		alpn := cs.NegotiatedProtocol
		if alpn == "" {
			alpn = "none"
		}
		return fmt.Errorf("%w (ALPN %s)", ErrVersionRequired, alpn)
	}
	return nil
}

// ErrResumeDowngrade: a client tried to resume a session that negotiated RADIUS/1.1 without
// offering radius/1.1 again.
var ErrResumeDowngrade = errors.New("radsec: resuming a RADIUS/1.1 session without radius/1.1")

// resumed11 marks, in a session ticket's Extra, a session that negotiated RADIUS/1.1.
var resumed11 = []byte("mxedge:radius/1.1")

// BindResumption makes a server configuration remember in its session tickets which sessions
// negotiated RADIUS/1.1, and terminate the handshake of a client that resumes one without
// radius/1.1 (RFC 9765, "Session Resumption": otherwise resumption could bid a connection down to
// historic RADIUS/TLS). It leaves a configuration with its own WrapSession or UnwrapSession, or on
// VersionOff, alone. cfg must be the configuration the handshakes use (its ticket keys seal the
// tickets).
func BindResumption(cfg *tls.Config) {
	if cfg == nil || cfg.WrapSession != nil || cfg.UnwrapSession != nil || VersionOf(cfg) == VersionOff {
		return
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if Is11(cs) {
			ss.Extra = append(ss.Extra, resumed11)
		}
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return ss, err
		}
		for _, e := range ss.Extra {
			if string(e) == string(resumed11) && !Is11(cs) {
				return nil, ErrResumeDowngrade
			}
		}
		return ss, nil
	}
}
