package eaptls

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers map them to NAC event reasons with errors.Is;
// every error returned by this package wraps exactly one of them.
var (
	// ErrConfig: ServerConfig or ClientConfig failed Validate.
	ErrConfig = errors.New("eaptls: invalid configuration")
	// ErrMalformed: an EAP or EAP-TLS packet violates RFC 3748 / RFC 5216
	// framing (bad lengths, wrong code or type, unexpected flags).
	ErrMalformed = errors.New("eaptls: malformed packet")
	// ErrNak: the peer refused EAP-TLS with a Nak. The concrete error is a
	// *NakError carrying the types the peer asked for.
	ErrNak = errors.New("eaptls: peer refused eap-tls")
	// ErrFragmentOverflow: reassembly exceeded MaxMessageSize or
	// MaxFragments, or the peer sent more than its announced TLS Message
	// Length.
	ErrFragmentOverflow = errors.New("eaptls: fragment overflow")
	// ErrOutOfOrder: a packet arrived that does not fit the conversation:
	// wrong EAP Identifier, data where an ACK was due, an ACK where data was
	// due, a second Start, Success before the handshake finished.
	ErrOutOfOrder = errors.New("eaptls: packet out of order")
	// ErrTimeout: the conversation exceeded its HandshakeTimeout.
	ErrTimeout = errors.New("eaptls: handshake timeout")
	// ErrPeerCertificate: the peer sent no certificate, or VerifyPeer (server)
	// or chain verification (client) rejected it. The verifier's error is
	// wrapped too.
	ErrPeerCertificate = errors.New("eaptls: peer certificate rejected")
	// ErrNoEMS: a TLS 1.2 peer did not offer the Extended Master Secret
	// extension (RFC 7627), without which crypto/tls refuses to export the
	// RFC 5216 key material. See docs/eap-tls.md.
	ErrNoEMS = errors.New("eaptls: tls 1.2 peer without extended master secret")
	// ErrPeerAlert: the peer aborted the handshake with a TLS alert, most
	// often because it does not trust the server certificate (check the
	// supplicant's CA and server name settings).
	ErrPeerAlert = errors.New("eaptls: peer sent tls alert")
	// ErrHandshake: crypto/tls failed the handshake for any other reason
	// (TLS garbage, no common version or cipher suite, bad signatures).
	ErrHandshake = errors.New("eaptls: tls handshake failed")
	// ErrCommitment: (client) a TLS 1.3 server did not send the one-byte
	// 0x00 commitment message of RFC 9190 §2.1.1.
	ErrCommitment = errors.New("eaptls: missing tls 1.3 commitment message")
	// ErrFailure: (client) the server sent EAP-Failure.
	ErrFailure = errors.New("eaptls: eap-failure received")
	// ErrClosed: the conversation was closed or has already finished.
	ErrClosed = errors.New("eaptls: conversation closed")
)

// NakError is returned when the peer answers EAP-TLS with a legacy Nak
// (RFC 3748 §5.3.1) or an expanded Nak (§5.3.2). errors.Is(err, ErrNak)
// reports true.
type NakError struct {
	// Types the peer would accept instead (Type-Data of the Nak). Empty for
	// an expanded Nak, whose vendor types are not decoded.
	Types []Type
}

func (e *NakError) Error() string {
	return fmt.Sprintf("%v: wants types %v", ErrNak, e.Types)
}

// Is makes errors.Is(err, ErrNak) true.
func (e *NakError) Is(target error) bool { return target == ErrNak }
