package survivability

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"

	"mxedge/proxy/packet"
)

// Event types (Event.Type): the names the Mist Access Assurance guide gives NAC events, so that an
// operator who knows the cloud's event list finds the same names at the edge. They are stable:
// scripts match them.
const (
	// TypeAccessAllowed and TypeAccessDenied are every access decision that is not a certificate
	// failure: the cloud's Accept or Reject relayed, and every local decision.
	TypeAccessAllowed = "NAC Client Access Allowed"
	TypeAccessDenied  = "NAC Client Access Denied"

	// A client certificate rejected by local EAP-TLS, by what it is issued to (CertHolder).
	TypeClientCertRevoked           = "NAC Client Cert Revoked"
	TypeClientCertExpired           = "NAC Client Certificate Expired"
	TypeClientCertValidationFailure = "NAC Client Certificate Validation Failure"

	TypeMachineCertRevoked           = "NAC Machine Certificate Revoked"
	TypeMachineCertExpired           = "NAC Machine Certificate Expired"
	TypeMachineCertValidationFailure = "NAC Machine Certificate Validation Failure"

	TypeUserCertRevoked           = "NAC User Certificate Revoked"
	TypeUserCertExpired           = "NAC User Certificate Expired"
	TypeUserCertValidationFailure = "NAC User Certificate Validation Failure"

	// Change of Authorization sent to a NAS (RFC 5176 §3): Disconnect-Request and CoA-Request.
	TypeCoADisconnect     = "NAC CoA Disconnect"
	TypeCoAReauthenticate = "NAC CoA Reauthenticate"

	// An identity push sink (edge/identity) stopped taking events, or took them again.
	TypeIdentitySinkDown = "Identity Sink Down"
	TypeIdentitySinkUp   = "Identity Sink Up"
)

// Event is one NAC decision: a local one (Engine, localeap) or the cloud's (Learner). The
// certificate fields are those of the client certificate a local EAP-TLS conversation was
// presented, when it got that far; a certificate rejected during the handshake was presented, not
// proven to be held (the peer's CertificateVerify comes after, RFC 8446 §4.4.3).
type Event struct {
	Time     time.Time
	Allowed  bool
	Method   string // mab, eap-tls, pap, eap, accounting
	MAC      string
	Identity string
	NAS      string
	// Port is the NAS port the client is on: NAS-Port-Id (RFC 2869 §5.17), else NAS-Port (RFC
	// 2865 §5.5) in decimal. SSID is the network name after the ':' of Called-Station-Id (RFC 3580
	// §3.20, "MAC:SSID"). Empty when the request does not say (SetStation).
	Port     string
	SSID     string
	Site     string
	VLAN     string
	Reason   string // ReasonCacheHit, ReasonDefaultVLAN, ReasonFailClosed, unsupported-method, unknown-state, spooled, spool-full, cert-expired, …
	Source   string // SourceLocal; SourceUpstream for the cloud's decisions (Learner); SourceExternal, SourceRoute (RouteEvent)
	Upstream string // the upstream that answered (SourceUpstream, SourceExternal)
	// Route, Pool and Realm are set on RouteEvent's events only: the route, the pool whose server
	// answered (Route.TargetLabel), the realm of User-Name.
	Route string
	Pool  string
	Realm string
	// Type is the guide's name of the event (Type* constants); "" for accounting, which is no
	// access decision.
	Type string
	// CertSerial is the client certificate's serial number in lower-case hex, CertCN its
	// subject CN, CertIssuer its issuer DN (RFC 4514 string), CertNotAfter the end of its
	// validity.
	CertSerial   string
	CertCN       string
	CertIssuer   string
	CertNotAfter time.Time
}

// AccessType is the Type of an access decision that is not a certificate failure.
func AccessType(allowed bool) string {
	if allowed {
		return TypeAccessAllowed
	}
	return TypeAccessDenied
}

// CertHolder is what a client certificate is issued to, which picks the Client, Machine or User
// variant of a certificate event's Type.
type CertHolder int

// Certificate holders.
const (
	CertClient  CertHolder = iota // not known: the guide's generic "NAC Client ..." names
	CertMachine                   // a computer (dNSName, "host/..." names)
	CertUser                      // a person (UPN or e-mail names)
)

// CertFailure is why a client certificate was rejected, as far as the event types tell apart.
type CertFailure int

// Certificate failures.
const (
	CertInvalid CertFailure = iota // unknown CA, wrong EKU, weak key, not yet valid, no certificate, …
	CertExpired
	CertRevoked
)

var certTypes = [3][3]string{
	CertClient:  {CertInvalid: TypeClientCertValidationFailure, CertExpired: TypeClientCertExpired, CertRevoked: TypeClientCertRevoked},
	CertMachine: {CertInvalid: TypeMachineCertValidationFailure, CertExpired: TypeMachineCertExpired, CertRevoked: TypeMachineCertRevoked},
	CertUser:    {CertInvalid: TypeUserCertValidationFailure, CertExpired: TypeUserCertExpired, CertRevoked: TypeUserCertRevoked},
}

// CertificateType is the Type of a certificate rejected for f, issued to h.
func CertificateType(h CertHolder, f CertFailure) string {
	if h < CertClient || h > CertUser {
		h = CertClient
	}
	if f < CertInvalid || f > CertRevoked {
		f = CertInvalid
	}
	return certTypes[h][f]
}

// SetCertificate fills ev's certificate fields from leaf (nil: leaves them empty).
func (ev *Event) SetCertificate(leaf *x509.Certificate) {
	if leaf == nil {
		return
	}
	ev.CertSerial = serialHex(leaf)
	ev.CertCN = leaf.Subject.CommonName
	ev.CertIssuer = leaf.Issuer.String()
	ev.CertNotAfter = leaf.NotAfter.UTC()
}

// serialHex is the serial number as even-length lower-case hex ("00" for zero), "-" before a
// negative one (invalid per RFC 5280 §4.1.2.2, but seen in the wild).
func serialHex(c *x509.Certificate) string {
	n := c.SerialNumber
	switch {
	case n == nil:
		return ""
	case n.Sign() == 0:
		return "00"
	case n.Sign() < 0:
		return "-" + hex.EncodeToString(n.Bytes())
	}
	return hex.EncodeToString(n.Bytes())
}

// SetStation fills ev's Port and SSID from the request (Port, SSID). An attribute that is absent
// leaves its field empty.
func (ev *Event) SetStation(req packet.Packet) {
	if v, ok := req.Attr(attrNASPortID); ok && len(v) > 0 {
		ev.Port = string(v)
	} else if v, ok := req.Attr(packet.AttrNASPort); ok && len(v) == 4 {
		ev.Port = strconv.FormatUint(uint64(binary.BigEndian.Uint32(v)), 10)
	}
	if v, ok := req.Attr(packet.AttrCalledStationID); ok {
		if i := bytes.IndexByte(v, ':'); i >= 0 && i+1 < len(v) {
			ev.SSID = string(v[i+1:])
		}
	}
}
