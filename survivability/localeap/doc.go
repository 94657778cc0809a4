// Package localeap terminates EAP-TLS over RADIUS locally while the cloud NAC is unreachable
// (docs/local-eap-tls.md). It owns the RADIUS side of EAP (RFC 3579): joining and splitting EAP-Message,
// the mandatory Message-Authenticator, one State per conversation, the conversation table with
// its cap and timeout, the authorization decision from the client cache once the certificate is
// verified, and the MS-MPPE keys of the Access-Accept (RFC 2548 §2.4.2). The EAP-TLS protocol
// itself is survivability/eaptls; certificate policy is pki.Verify.
package localeap
