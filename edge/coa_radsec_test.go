package edge_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// TestE2ECoAOverRadSecListener: a RadSec peer configured with dynamic_authorization sends a
// Disconnect-Request on its connection to mxedge's RadSec listener; it is relayed to the NAS
// (FreeRADIUS as the stand-in) and the Disconnect-ACK comes back on the same connection. A peer
// without dynamic_authorization gets no answer (wrong-code, as before).
func TestE2ECoAOverRadSecListener(t *testing.T) {
	certs := peertest.NewCerts(t)
	coaPort := peertest.FreePort(t)
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		CoAAddr:    fmt.Sprintf("127.0.0.1:%d", coaPort),
		UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: nasSecret}},
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	peerLine := `- {name: ise, address: 127.0.0.1, cert_names: ["edge.example.test"], dynamic_authorization: true}`
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		return fmt.Sprintf("radsec:\n  listen: [\"127.0.0.1:0\"]\n  tls: {certificate: %s, key: %s, ca: %s}\n  peers:\n    %s\n",
			lab.ServerCert, lab.ServerKey, lab.CAFile, peerLine)
	})
	x.rewrite(t, func(s string) string {
		return replaceOnce(s, "    vendor: cisco\n", fmt.Sprintf("    vendor: cisco\n    coa_port: %d\n", coaPort))
	})
	send := func() (packet.Packet, error) {
		cfg := x.lab.ClientTLS()
		cfg.ServerName = "localhost"
		c, err := tls.Dial("tcp", x.radsec, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := packet.New(nil, packet.CodeDisconnectRequest, 7, nil)
		b.AddMA()
		b.Add(packet.AttrNASIPAddress, []byte{127, 0, 0, 1})
		b.AddString(packet.AttrCallingStationID, "AA-BB-CC-DD-EE-FF")
		req, err := b.Finish([]byte(radsec.DefaultSecret), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := radsec.ReadPacket(bufio.NewReader(c))
		if err == nil && (!packet.CheckResponseAuthenticator(resp, req.Authenticator(), []byte(radsec.DefaultSecret)) || resp.ID() != 7) {
			t.Fatalf("answer %v id %d does not answer the request", resp.Code(), resp.ID())
		}
		return resp, err
	}
	resp, err := send()
	if err != nil || resp.Code() != packet.CodeDisconnectACK {
		t.Fatalf("Disconnect-Request over RadSec: %v %v", resp, err)
	}
	if recs, _ := nas.CoA(); len(recs) != 1 || recs[0].Map["Calling-Station-Id"] != "AA-BB-CC-DD-EE-FF" {
		t.Fatalf("the NAS got %v", recs)
	}
	if evs := x.edge.Events().Recent(5); len(evs) == 0 || evs[len(evs)-1].Reason != "ack from radsec:ise by nas-ip-address" {
		t.Errorf("events %+v", evs)
	}

	x.rewrite(t, func(s string) string { return replaceOnce(s, ", dynamic_authorization: true", "") })
	if _, err := send(); err == nil {
		t.Fatal("a peer without dynamic_authorization got an answer")
	}
	if n := x.edge.Server().Stats().Dropped[proxy.DropWrongCode].Load(); n != 1 {
		t.Errorf("wrong-code drops %d, want 1", n)
	}
}
