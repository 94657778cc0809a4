package localeap

import (
	"crypto/x509"
	"errors"
	"strings"

	"mxedge/pki"
	"mxedge/survivability"
	"mxedge/survivability/eaptls"
)

// MethodEAPTLS is Event.Method.
const MethodEAPTLS = "eap-tls"

// Event reasons. Certificate failures carry pki's reasons (pki.ReasonExpired "cert-expired",
// pki.ReasonRevoked "cert-revoked", pki.ReasonUnknownCA "unknown-ca", pki.ReasonWrongEKU
// "wrong-eku", weak-key, cert-not-yet-valid, revocation-unavailable, cert-invalid).
const (
	ReasonCacheHit     = survivability.ReasonCacheHit    // accepted with the cached authorization
	ReasonDefaultVLAN  = survivability.ReasonDefaultVLAN // accepted on a cache miss with the default VLAN
	ReasonFailClosed   = survivability.ReasonFailClosed  // authenticated, unknown to the cache, failmode closed
	ReasonNak          = "nak"                           // the peer asked for another EAP method
	ReasonTimeout      = "timeout"                       // the conversation outlived ConversationTimeout
	ReasonMalformed    = "malformed"                     // bad EAP or EAP-TLS framing, out-of-order packets
	ReasonTooMany      = "too-many-conversations"
	ReasonUnknownState = "unknown-state" // a State we did not issue, or whose conversation ended
	ReasonNoEMS        = "no-ems"        // TLS 1.2 without Extended Master Secret (docs/eap-tls.md)
	ReasonPeerAlert    = "peer-alert"    // the supplicant aborted, usually distrusting our certificate
	ReasonTLS          = "tls-failed"    // any other TLS failure (no common version, bad signature)
	ReasonNoIdentity   = "no-identity"   // the certificate carries none of the IdentityOrder names
)

// Event is the NAC event of one local EAP-TLS conversation: survivability's decision event, with
// Method "eap-tls", Source survivability.SourceLocal, MAC the canonical Calling-Station-Id,
// Identity the certificate identity (the outer EAP identity when no certificate was seen), NAS and
// Site those of the request's proxy.Client, VLAN the VLAN given, and the certificate fields of the
// client certificate once one was presented. Type is the certificate failure's
// (certificateType) when the certificate was rejected, else survivability.AccessType. Time is
// left to the consumer.
type Event = survivability.Event

// certificateType is the Type of an event for a client certificate rejected with reason (a pki
// reason): expired and revoked have their own types, every other reason is a validation failure.
func certificateType(leaf *x509.Certificate, reason string) string {
	f := survivability.CertInvalid
	switch reason {
	case pki.ReasonExpired:
		f = survivability.CertExpired
	case pki.ReasonRevoked:
		f = survivability.CertRevoked
	}
	return survivability.CertificateType(certHolder(leaf), f)
}

// certHolder tells a user's certificate from a machine's by its names, as certificate templates
// issue them (an Active Directory User template names a UPN and an e-mail, a Computer template a
// dNSName): a UPN or e-mail SAN is a user's; else a dNSName SAN or a "host/" CN (Windows machine
// authentication) a machine's; a certificate naming neither is the guide's generic client.
func certHolder(leaf *x509.Certificate) survivability.CertHolder {
	if leaf == nil {
		return survivability.CertClient
	}
	s := pki.CertificateSANs(leaf)
	switch {
	case len(s.UPNs) > 0 || len(s.Emails) > 0:
		return survivability.CertUser
	case len(s.DNSNames) > 0 || strings.HasPrefix(strings.ToLower(leaf.Subject.CommonName), "host/"):
		return survivability.CertMachine
	}
	return survivability.CertClient
}

// reasonFor maps an eaptls failure to its event reason.
func reasonFor(err error) string {
	switch {
	case errors.Is(err, eaptls.ErrNak):
		return ReasonNak
	case errors.Is(err, eaptls.ErrPeerCertificate):
		// A missing certificate has no pki cause and maps to cert-invalid.
		return pki.Reason(err)
	case errors.Is(err, eaptls.ErrTimeout):
		return ReasonTimeout
	case errors.Is(err, eaptls.ErrNoEMS):
		return ReasonNoEMS
	case errors.Is(err, eaptls.ErrPeerAlert):
		return ReasonPeerAlert
	case errors.Is(err, eaptls.ErrHandshake):
		return ReasonTLS
	case errors.Is(err, eaptls.ErrClosed):
		return ReasonUnknownState
	}
	// ErrMalformed, ErrFragmentOverflow, ErrOutOfOrder and anything unexpected.
	return ReasonMalformed
}
