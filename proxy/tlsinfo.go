package proxy

import (
	"crypto/tls"
	"slices"

	"mxedge/proxy/radsec"
)

// TLSInfo is what one RadSec connection negotiated, for `mxedge status` and metrics.
type TLSInfo struct {
	Version string      `json:"version"` // "TLS 1.3"
	Cipher  string      `json:"cipher"`  // "TLS_AES_128_GCM_SHA256"
	Group   string      `json:"group"`   // key exchange, "X25519MLKEM768"
	Hybrid  bool        `json:"hybrid"`  // Group is a post-quantum hybrid (HybridGroups)
	CurveID tls.CurveID `json:"curve_id"`
	// RADIUS is the RADIUS version the connection carries: "1.1" when ALPN negotiated
	// radius/1.1 (RFC 9765), else "1.0" (historic RADIUS/TLS, RFC 6614).
	RADIUS string `json:"radius"`
}

// NewTLSInfo summarises a completed handshake (tls.ConnectionState.CurveID is the key exchange
// group, RFC 8446 §4.2.7).
func NewTLSInfo(cs tls.ConnectionState) TLSInfo {
	info := TLSInfo{Version: tls.VersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite), CurveID: cs.CurveID,
		Hybrid: IsHybrid(cs.CurveID), RADIUS: radsec.VersionName(cs)}
	if cs.CurveID != 0 {
		info.Group = cs.CurveID.String()
	}
	return info
}

// HybridGroups are the post-quantum hybrid key exchanges crypto/tls implements, in its
// preference order; a configuration that requires a hybrid offers and accepts only these.
// They exist in TLS 1.3 only.
func HybridGroups() []tls.CurveID {
	return []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}
}

// IsHybrid reports whether id is one of HybridGroups.
func IsHybrid(id tls.CurveID) bool { return slices.Contains(HybridGroups(), id) }

// RequireHybrid restricts cfg to the hybrid groups and TLS 1.3, so a peer that offers no hybrid
// fails the handshake (crypto/tls sends a handshake_failure alert) instead of falling back to a
// classical group. Go's default already offers X25519MLKEM768 first; this removes the fallback.
func RequireHybrid(cfg *tls.Config) {
	cfg.CurvePreferences = HybridGroups()
	cfg.MinVersion = tls.VersionTLS13
}

// SetRADIUSVersion applies a radius_version setting, "allow" (also ""), "off" or "require", to a
// RadSec TLS configuration as its ALPN list (radsec.Version, RFC 9765): the upstream connections
// and the listener read the setting back from the list (radsec.VersionOf).
func SetRADIUSVersion(cfg *tls.Config, version string) error {
	v := radsec.VersionAllow
	if version != "" {
		var err error
		if v, err = radsec.ParseVersion(version); err != nil {
			return err
		}
	}
	v.Apply(cfg)
	return nil
}
