package config

import (
	"crypto/tls"

	"mxedge/proxy"
)

// hybridKEX applies require_hybrid_kex to a RadSec TLS configuration: only the post-quantum
// hybrid groups (proxy.HybridGroups), hence TLS 1.3. Without it Go's default list applies, which
// offers X25519MLKEM768 first and falls back to classical groups.
func hybridKEX(v *validator, path string, t TLSFile, cfg *tls.Config) *tls.Config {
	radiusVersion(t, cfg)
	if !t.RequireHybridKEX {
		return cfg
	}
	if t.MinVersion == "1.2" {
		v.errorf(path+".min_version", "1.2 contradicts require_hybrid_kex: hybrid key exchange needs TLS 1.3")
	}
	proxy.RequireHybrid(cfg)
	return cfg
}

// radiusVersion applies radius_version to a RadSec TLS configuration as its ALPN list (RFC 9765,
// "Configuration of ALPN for RADIUS/1.1"): allow (the default the RFC mandates) offers and accepts
// radius/1.1 and radius/1.0 and prefers 1.1; off sends and answers no ALPN (historic RADIUS/TLS
// only, as before RADIUS/1.1); require offers and accepts radius/1.1 only. RADIUS/1.1 needs TLS 1.3.
// The value was checked by checkRADIUSVersion.
func radiusVersion(t TLSFile, cfg *tls.Config) {
	_ = proxy.SetRADIUSVersion(cfg, t.RADIUSVersion)
}

// checkRADIUSVersion reports a wrong radius_version, also when the block's certificates do not
// load, so that `mxedge check` names every bad field at once.
func checkRADIUSVersion(v *validator, path string, t TLSFile) {
	if err := proxy.SetRADIUSVersion(&tls.Config{}, t.RADIUSVersion); err != nil {
		v.errorf(path+".radius_version", "%q is not one of allow, off, require", t.RADIUSVersion)
		return
	}
	if t.RADIUSVersion == "require" && t.MinVersion == "1.2" {
		v.errorf(path+".min_version", "1.2 contradicts radius_version: require: RADIUS/1.1 needs TLS 1.3")
	}
}
