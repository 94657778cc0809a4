package mgmt

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// APIVersion is the path prefix of the management API this edge speaks. A controller that changes
// the wire format incompatibly serves it under a new prefix (/api/v2) and keeps v1 for old edges.
const APIVersion = "/api/v1"

// API paths (see docs/api/openapi.yaml). {id} is the edge ID returned by register.
const (
	PathPing     = APIVersion + "/ping"
	PathRegister = APIVersion + "/register"
	pathEdges    = APIVersion + "/edges/"
)

// PathConfig, PathClients, PathRenew and PathCertificates return the per-edge paths.
func PathConfig(id string) string       { return pathEdges + id + "/config" }
func PathClients(id string) string      { return pathEdges + id + "/clients" }
func PathRenew(id string) string        { return pathEdges + id + "/renew" }
func PathCertificates(id string) string { return pathEdges + id + "/certificates" }

// Media types.
const (
	MediaJSON  = "application/json"
	MediaYAML  = "application/yaml"
	MediaJSONL = "application/jsonl"
)

// Facts describe the edge to the controller at registration, so an operator can tell edges apart.
type Facts struct {
	Hostname string `json:"hostname"`
	Version  string `json:"version"`
	MgmtIP   string `json:"mgmt_ip,omitempty"`
	MgmtMAC  string `json:"mgmt_mac,omitempty"`
	// Time is the edge's clock when it sent the request (RFC 3339); a controller may use it to
	// refuse an edge whose clock is far off.
	Time time.Time `json:"time"`
}

// Ping is the body of GET /api/v1/ping: the unauthenticated preflight that proves reachability,
// TLS and clock before a single-use registration code is spent.
type Ping struct {
	APIVersion string    `json:"api_version"` // "v1"
	Time       time.Time `json:"time"`
}

// RegisterRequest is the body of POST /api/v1/register.
type RegisterRequest struct {
	Code  string `json:"code"`
	CSR   string `json:"csr"` // PEM PKCS#10 (RFC 2986), signed by the edge's new key
	Facts Facts  `json:"facts"`
}

// RegisterResponse is the 201 body of POST /api/v1/register.
type RegisterResponse struct {
	EdgeID string `json:"edge_id"`
	// Certificate is the edge's client certificate chain (PEM, leaf first). It authenticates the
	// edge to the management API (mutual TLS) and to the RadSec upstreams (RFC 6614 §2.3).
	Certificate string `json:"certificate"`
	// CABundle (PEM) verifies the RadSec upstreams; it is written to ca.pem.
	CABundle string `json:"ca_bundle"`
	// Upstreams lists the RadSec upstreams (informational: the configuration is authoritative).
	Upstreams []Upstream `json:"radsec_upstreams"`
	// Config is a complete mxedge YAML configuration document (docs/management.md, precedence).
	Config string `json:"config"`
}

// Upstream is one RadSec upstream as the controller announces it.
type Upstream struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// RenewRequest is the body of POST /api/v1/edges/{id}/renew.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse is the 200 body of POST /api/v1/edges/{id}/renew.
type RenewResponse struct {
	Certificate string `json:"certificate"`
}

// ServerCertificates is the 200 body of GET /api/v1/edges/{id}/certificates: the material the
// edge's local EAP-TLS listener serves during an outage (docs/management.md, "Server certificate
// sync"). The edge checks it before use (pki.ParseServerBundle) and keeps its last good files when
// it fails.
type ServerCertificates struct {
	// OrgCA (PEM) holds the CA certificate(s) that sign the organization's client certificates and
	// the server certificate; written to survivability.eap_tls.ca.
	OrgCA string `json:"org_ca"`
	// Certificate is the listener's server certificate chain (PEM, leaf first, serverAuth EKU);
	// written to survivability.eap_tls.certificate.
	Certificate string `json:"certificate"`
	// Key is its private key (PEM), plain or passphrase-protected (PKCS#8 or legacy PEM); the
	// passphrase never travels: the edge reads it from survivability.eap_tls.key_passphrase_file.
	// Written to survivability.eap_tls.key, mode 0600.
	Key string `json:"key"`
}

// ErrorBody is every non-2xx JSON body: a stable machine code and a human message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes a controller returns in ErrorBody.Code.
const (
	CodeBadRequest      = "bad_request"     // 400: malformed body, bad CSR
	CodeInvalidCode     = "invalid_code"    // 403: the registration code is unknown
	CodeExpiredCode     = "expired_code"    // 403: the code is past its validity
	CodeUsedCode        = "used_code"       // 409: the code was already used by an edge
	CodeUnauthenticated = "unauthenticated" // 401: no or unknown client certificate
	CodeForbidden       = "forbidden"       // 403: the certificate is not this edge's
	CodeNotFound        = "not_found"       // 404: unknown edge
	CodeInternal        = "internal"        // 5xx
	CodeUnavailable     = "unavailable"     // 503: try again later
)

// ETag returns the entity tag the reference controller uses for a body: the quoted hex SHA-256 of
// its bytes. Because it depends only on the bytes, an edge can compute the tag of the configuration
// already on disk and send it in If-None-Match on its first round after a restart, so an unchanged
// document is not downloaded and reloaded again. Controllers SHOULD use it for the config resource
// (any strong ETag works; a different scheme only costs one extra download after a restart).
func ETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}
