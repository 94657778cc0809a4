package edge_test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestMetricsRadSecConnections: each RadSec connection's negotiated TLS version, cipher and key
// exchange group are a gauge's labels, for the upstream and for a peer of the listener (Go's
// default negotiates the X25519MLKEM768 hybrid on both), and so is the RADIUS version (1.0 with
// the Go responder, which offers no ALPN); the scrape passes promtool.
func TestMetricsRadSecConnections(t *testing.T) {
	pt := promtool(t)
	m := startMetricsEdge(t)
	scrape := m.scrape(t)
	mfs := families(t, scrape)
	want := map[string]string{"direction": "upstream", "peer": "up", "tls_version": "TLS 1.3", "cipher": "TLS_AES_128_GCM_SHA256", "group": "X25519MLKEM768",
		"radius_version": "1.0"}
	if n := sum(mfs, "mxedge_radsec_connections", want); n < 1 {
		t.Fatalf("no mxedge_radsec_connections%v in\n%s", want, grep(scrape, "radsec_connections"))
	}
	// The listener's side of the peer startMetricsEdge connected.
	lwant := map[string]string{"direction": "listener", "peer": "ap", "tls_version": "TLS 1.3", "group": "X25519MLKEM768"}
	for deadline := time.Now().Add(2 * time.Second); sum(mfs, "mxedge_radsec_connections", lwant) < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no mxedge_radsec_connections%v in\n%s", lwant, grep(scrape, "radsec_connections"))
		}
		time.Sleep(20 * time.Millisecond)
		scrape = m.scrape(t)
		mfs = families(t, scrape)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pt, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func grep(b []byte, s string) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, []byte(s)) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
