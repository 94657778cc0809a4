package config

import (
	"crypto/tls"

	"mxedge/proxy"
)

// hybridKEX applies require_hybrid_kex to a RadSec TLS configuration: only the post-quantum
// hybrid groups (proxy.HybridGroups), hence TLS 1.3. Without it Go's default list applies, which
// offers X25519MLKEM768 first and falls back to classical groups.
func hybridKEX(v *validator, path string, t TLSFile, cfg *tls.Config) *tls.Config {
	if !t.RequireHybridKEX {
		return cfg
	}
	if t.MinVersion == "1.2" {
		v.errorf(path+".min_version", "1.2 contradicts require_hybrid_kex: hybrid key exchange needs TLS 1.3")
	}
	proxy.RequireHybrid(cfg)
	return cfg
}
