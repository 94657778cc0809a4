package edge_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// TestE2ERadSecReloadDisconnectsRemovedPeer: the daemon's reload (what SIGHUP runs) closes the
// connection of a RadSec peer the new configuration no longer has, within a second.
func TestE2ERadSecReloadDisconnectsRemovedPeer(t *testing.T) {
	const peer = `- {name: go-peer, address: 127.0.0.1, cert_names: ["edge.example.test"]}`
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		return fmt.Sprintf("radsec:\n  listen: [\"127.0.0.1:0\"]\n  tls: {certificate: %s, key: %s, ca: %s}\n  peers:\n    %s\n",
			lab.ServerCert, lab.ServerKey, lab.CAFile, peer)
	})
	cfg := x.lab.ClientTLS()
	cfg.ServerName = "localhost"
	c, err := tls.Dial("tcp", x.radsec, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	req, err := radsec.StatusServer(nil, 9, []byte(radsec.DefaultSecret))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if resp, err := radsec.ReadPacket(r); err != nil || resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("Status-Server before the reload: %v", err)
	}

	b, err := os.ReadFile(x.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(b), peer, `- {name: go-peer, address: 127.0.0.2, cert_names: ["edge.example.test"]}`, 1)
	if err := os.WriteFile(x.cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	next, err := config.Load(x.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := x.edge.Reload(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = radsec.ReadPacket(r)
	if ne, ok := errors.AsType[net.Error](err); err == nil || ok && ne.Timeout() {
		t.Fatalf("peer removed by the reload still connected after a second (read: %v)", err)
	}
	t.Logf("closed %v after the reload", time.Since(start))
	if n := x.edge.Listener().Stats().Reloaded.Load(); n != 1 {
		t.Fatalf("%d reload disconnects counted, want 1", n)
	}
}
