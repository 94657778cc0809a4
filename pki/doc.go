// Package pki owns certificates for mxedge: a lab or small-organization CA,
// issuance of RadSec/EAP server and client certificates, CSRs for an
// organization's CA, a human description of a certificate (pki show), chain
// verification with typed failure reasons (pki verify), CRL/OCSP revocation
// checking in the background, expiry warnings, and hot reload of TLS material.
//
// It is a leaf package: it imports no other mxedge package. Profiles follow
// RFC 5280 (X.509 PKIX) and, for RadSec, RFC 6614 §2.3 (certificate
// validation of RADIUS/TLS peers).
package pki
