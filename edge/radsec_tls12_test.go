package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// TestE2ERadSecTLS12AEAD: with TLS held to 1.2, mxedge's AEAD-only suite list still interoperates
// with the real peers, both ways: FreeRADIUS as the upstream answers a Status-Server, and
// radsecproxy as a RadSec client of mxedge's listener gets its Access-Request answered.
func TestE2ERadSecTLS12AEAD(t *testing.T) {
	peertest.Require(t, "freeradius", "radsecproxy", "radclient")
	lab := pkitest.Must(t)

	t.Run("freeradius upstream", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
		peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{RadSecAddr: addr,
			ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile})
		cfg := lab.ClientTLS()
		cfg.CipherSuites = proxy.RadSecCipherSuites()
		cfg.MaxVersion = tls.VersionTLS12
		cfg.ServerName = "localhost"
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("TLS 1.2 handshake with FreeRADIUS: %v", err)
		}
		defer c.Close()
		st := c.ConnectionState()
		if st.Version != tls.VersionTLS12 || !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "GCM") &&
			!strings.Contains(tls.CipherSuiteName(st.CipherSuite), "CHACHA20") {
			t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
		}
		req, err := radsec.StatusServer(nil, 7, []byte(radsec.DefaultSecret))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		resp, err := radsec.ReadPacket(bufio.NewReader(c))
		if err != nil || resp.ID() != 7 {
			t.Fatalf("Status-Server over %s: %v", tls.CipherSuiteName(st.CipherSuite), err)
		}
		t.Logf("FreeRADIUS: %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	})

	t.Run("radsecproxy client", func(t *testing.T) {
		logs := &syncBuffer{}
		logger := slog.New(slog.NewTextHandler(logs, nil))
		srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}, Logger: logger}, acceptAll{})
		if err != nil {
			t.Fatal(err)
		}
		server := lab.ServerTLS()
		server.MaxVersion = tls.VersionTLS12
		ln, err := proxy.NewListener(proxy.ListenerOptions{Addrs: []string{"127.0.0.1:0"}, TLS: server, Logger: logger,
			Peers: []proxy.RadSecPeer{{Client: proxy.Client{Name: "radsecproxy", Prefix: netip.MustParsePrefix("127.0.0.1/32")},
				CertNames: []string{"localhost"}}}}, srv)
		if err != nil {
			t.Fatal(err)
		}
		if err := ln.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); ln.Run(ctx) }()
		defer func() { cancel(); <-done; ln.Close() }()

		udp := peertest.FreePort(t)
		peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
			ListenUDP: fmt.Sprintf("127.0.0.1:%d", udp),
			Clients:   []peertest.Client{{Addr: "127.0.0.1", Secret: "proxy secret"}},
			Upstream:  ln.Addrs()[0].String(),
			Cert:      lab.ServerCert, Key: lab.ServerKey, CA: lab.CAFile,
		})
		r := radclient(t, fmt.Sprintf("127.0.0.1:%d", udp), "auth", "proxy secret", []string{
			`User-Name = "alice"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`,
		})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("radsecproxy → mxedge listener over TLS 1.2: %q", r.Code)
		}
		if !strings.Contains(logs.String(), `tls="TLS 1.2"`) {
			t.Fatalf("listener did not log a TLS 1.2 peer:\n%s", logs)
		}
	})
}

// acceptAll answers every request with an Access-Accept.
type acceptAll struct{}

func (acceptAll) ServeRADIUS(req *proxy.Request) {
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessAccept)
	resp, _ := b.Finish(req.Secret(), req.Packet.Authenticator())
	req.Reply(resp)
}
