package eaptls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
)

// Exporter labels.
const (
	// RFC 5216 §2.3: Key_Material = TLS-PRF-128(master_secret,
	// "client EAP encryption", client.random || server.random), which is the
	// RFC 5705 exporter with no context.
	labelTLS12 = "client EAP encryption"
	// RFC 9190 §2.3: Key_Material = TLS-Exporter(
	// "EXPORTER_EAP_TLS_Key_Material", Type-Code, 128).
	labelTLS13Key = "EXPORTER_EAP_TLS_Key_Material"
	// RFC 9190 §2.3: Method-Id = TLS-Exporter(
	// "EXPORTER_EAP_TLS_Method-Id", "", 64).
	labelTLS13MethodID = "EXPORTER_EAP_TLS_Method-Id"

	keyMaterialLen = 128
	methodIDLen    = 64
)

// Result is the outcome of a successful conversation. It holds key material:
// never log it field by field; its LogValue redacts the keys.
type Result struct {
	Version     uint16 // tls.VersionTLS12 or tls.VersionTLS13
	CipherSuite uint16
	// PeerCertificates is the chain the peer sent, leaf first: the client's
	// on the server side, the server's on the client side.
	PeerCertificates []*x509.Certificate
	// OuterIdentity is the EAP-Response/Identity, possibly anonymous; the
	// authorization identity comes from the certificate.
	OuterIdentity string
	// MSK and EMSK: the first and second 64 octets of Key_Material
	// (RFC 5216 §2.3, RFC 9190 §2.3).
	MSK, EMSK [64]byte
	// SessionID is the EAP Session-Id: 0x0D || client.random ||
	// server.random for TLS 1.2 (RFC 5216 §2.3), 0x0D || Method-Id for
	// TLS 1.3 (RFC 9190 §2.3).
	SessionID []byte
}

// LogValue keeps MSK and EMSK out of logs.
func (r *Result) LogValue() slog.Value {
	if r == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("version", tls.VersionName(r.Version)),
		slog.String("cipher", tls.CipherSuiteName(r.CipherSuite)),
		slog.String("user", r.OuterIdentity),
		slog.String("msk", "REDACTED"),
	)
}

// MPPEKeys splits the MSK into the MS-MPPE-Recv-Key and MS-MPPE-Send-Key
// the authenticator puts into the Access-Accept (RFC 2548 §2.4.2-3):
// Recv-Key is MSK[0:32], Send-Key is MSK[32:64], as FreeRADIUS does and as
// eapol_test checks ("MPPE keys OK" compares Recv-Key with the first 32 octets
// of the supplicant's MSK, the PMK). The result is fresh memory.
func MPPEKeys(msk [64]byte) (recv, send []byte) {
	recv = append([]byte(nil), msk[:32]...)
	send = append([]byte(nil), msk[32:]...)
	return recv, send
}

// newResult derives the keys of a finished handshake.
func newResult(cs *tls.ConnectionState, c *memConn) (*Result, error) {
	r := &Result{
		Version:          cs.Version,
		CipherSuite:      cs.CipherSuite,
		PeerCertificates: cs.PeerCertificates,
	}
	var km []byte
	var err error
	switch cs.Version {
	case tls.VersionTLS13:
		km, err = cs.ExportKeyingMaterial(labelTLS13Key, []byte{byte(TypeTLS)}, keyMaterialLen)
		if err != nil {
			return nil, fmt.Errorf("%w: exporting key material: %w", ErrHandshake, err)
		}
		mid, err := cs.ExportKeyingMaterial(labelTLS13MethodID, []byte{}, methodIDLen)
		if err != nil {
			return nil, fmt.Errorf("%w: exporting method-id: %w", ErrHandshake, err)
		}
		r.SessionID = append([]byte{byte(TypeTLS)}, mid...)
	case tls.VersionTLS12:
		km, err = cs.ExportKeyingMaterial(labelTLS12, nil, keyMaterialLen)
		if err != nil {
			// crypto/tls refuses the TLS 1.2 exporter without Extended
			// Master Secret (RFC 7627); the ClientHello check should have
			// caught this first.
			return nil, fmt.Errorf("%w: %w", ErrNoEMS, err)
		}
		if len(c.clientRandom) == helloRandomLen && len(c.serverRandom) == helloRandomLen {
			r.SessionID = make([]byte, 0, 1+2*helloRandomLen)
			r.SessionID = append(r.SessionID, byte(TypeTLS))
			r.SessionID = append(r.SessionID, c.clientRandom...)
			r.SessionID = append(r.SessionID, c.serverRandom...)
		}
	default:
		return nil, fmt.Errorf("%w: negotiated %s", ErrHandshake, tls.VersionName(cs.Version))
	}
	copy(r.MSK[:], km[:64])
	copy(r.EMSK[:], km[64:])
	clear(km)
	return r, nil
}
