package cli

import (
	"crypto/tls"
	"net/netip"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/proxy"
)

// TestStatusTLS: status shows per RadSec connection (upstream, listener peer, discovered realm)
// the TLS version, cipher and key exchange group, marking post-quantum hybrids, and the RADIUS
// version it carries (1.1 when ALPN negotiated radius/1.1, RFC 9765).
func TestStatusTLS(t *testing.T) {
	hybrid := proxy.NewTLSInfo(tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, CurveID: tls.X25519MLKEM768,
		NegotiatedProtocol: "radius/1.1"})
	classic := proxy.NewTLSInfo(tls.ConnectionState{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, CurveID: tls.X25519})
	st := edge.Status{
		Mode: "up", Since: opsT0.Add(-time.Hour), Started: opsT0.Add(-time.Hour),
		Upstreams: []proxy.UpstreamStatus{{Name: "cloud-a", State: proxy.StateUp, Since: opsT0.Add(-time.Hour),
			Addr: netip.MustParseAddrPort("192.0.2.10:2083"), RTT: 12 * time.Millisecond, Connections: 2, Answered: 10,
			TLS: []proxy.TLSInfo{hybrid, classic}}},
		RadSec: []proxy.PeerConnStatus{{NAS: "ap-fleet", Peer: netip.MustParseAddrPort("10.3.0.7:51812"), TLS: hybrid}},
		Realms: []proxy.RealmStatus{{Realm: "campus.example", Idle: 42 * time.Second, Upstream: proxy.UpstreamStatus{
			Name: "campus.example", State: proxy.StateUp, Addr: netip.MustParseAddrPort("198.51.100.4:2083"), Answered: 3,
			TLS: []proxy.TLSInfo{hybrid}}}},
		Dropped: map[string]uint64{},
	}
	sock := startFakeDaemon(t, control.Options{Status: func() any { return st }})
	out, err := runOps(t, newStatusCmdEnv(testOpsEnv()), "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	opsGolden(t, "status_tls.golden", out)
	out, err = runOps(t, newStatusCmdEnv(testOpsEnv()), "--socket", sock, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	opsGolden(t, "status_tls_v1.json.golden", out)
}
