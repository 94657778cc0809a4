package localeap

import (
	"errors"

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
// Site those of the request's proxy.Client, VLAN the VLAN given. Time is left to the consumer.
type Event = survivability.Event

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
