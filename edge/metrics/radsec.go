package metrics

import "github.com/prometheus/client_golang/prometheus"

// RadSecConn is one live RadSec connection's negotiated TLS parameters (proxy.TLSInfo).
type RadSecConn struct {
	Direction string // "upstream" (mxedge dialled, discovered realms included) or "listener"
	Peer      string // the upstream's name, the realm, or the NAS's
	Version   string // "TLS 1.3"
	Cipher    string
	Group     string // key exchange group, e.g. "X25519MLKEM768"
	RADIUS    string // "1.1" when ALPN negotiated radius/1.1 (RFC 9765), else "1.0"
}

// RadSecRefused counts RadSec connections closed after their handshake because they did not
// negotiate RADIUS/1.1 where radius_version: require asks for it.
type RadSecRefused struct{ Upstream, Listener uint64 }

var descRadSecConns = desc("radsec_connections",
	"Open RadSec connections by direction, peer and what their TLS handshake negotiated (version, cipher suite, key exchange group, RADIUS version by ALPN).",
	"direction", "peer", "tls_version", "cipher", "group", "radius_version")

var descRadSecRefused = desc("radsec_version_refused_total",
	"RadSec connections closed after the handshake because they did not negotiate RADIUS/1.1 (ALPN radius/1.1) where radius_version: require asks for it, or negotiated it over TLS 1.2.",
	"direction")

// collectRadSec counts the connections per label set: connections of one peer usually share
// their parameters, so this is one series per peer, not per connection.
func collectRadSec(gauge func(d *prometheus.Desc, v float64, labels ...string), conns []RadSecConn) {
	n := map[RadSecConn]int{}
	var order []RadSecConn
	for _, c := range conns {
		if n[c] == 0 {
			order = append(order, c)
		}
		n[c]++
	}
	for _, c := range order {
		gauge(descRadSecConns, float64(n[c]), c.Direction, c.Peer, c.Version, c.Cipher, c.Group, c.RADIUS)
	}
}

func collectRadSecRefused(counter func(d *prometheus.Desc, v uint64, labels ...string), r RadSecRefused) {
	counter(descRadSecRefused, r.Upstream, "upstream")
	counter(descRadSecRefused, r.Listener, "listener")
}
