package edge_test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestMetricsRadSecConnections: each RadSec connection's negotiated TLS version, cipher and key
// exchange group are a gauge's labels (Go's default negotiates the X25519MLKEM768 hybrid with the
// Go upstream), and the scrape passes promtool.
func TestMetricsRadSecConnections(t *testing.T) {
	pt := promtool(t)
	m := startMetricsEdge(t)
	scrape := m.scrape(t)
	mfs := families(t, scrape)
	want := map[string]string{"direction": "upstream", "peer": "up", "tls_version": "TLS 1.3", "cipher": "TLS_AES_128_GCM_SHA256", "group": "X25519MLKEM768"}
	if n := sum(mfs, "mxedge_radsec_connections", want); n < 1 {
		t.Fatalf("no mxedge_radsec_connections%v in\n%s", want, grep(scrape, "radsec_connections"))
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
