package dynauth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
)

// TestReverseCoAOverUpstream: the cloud (a test double of the RadSec server) sends a CoA-Request
// and a Disconnect-Request on the connection mxedge's pool opened; the relay sends them to the NAS
// (FreeRADIUS) re-signed with the NAS's secret, and the NAS's answers come back on the same
// connection, signed with the RadSec secret.
func TestReverseCoAOverUpstream(t *testing.T) {
	l := startLab(t, nil)
	pl := pkitest.Must(t)
	cloud, err := radsectest.Start(pl.ServerTLS(), "radsec")
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	pool, err := proxy.NewPool(proxy.PoolOptions{
		Upstreams: []proxy.UpstreamOptions{{Name: "cloud", Host: "127.0.0.1", Port: cloud.Addr().Port(), TLS: pl.ClientTLS()}},
		DynAuth:   l.relay,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pool.Run(ctx) }()
	defer func() { cancel(); <-done }()

	send := func(code packet.Code, user string) packet.Packet {
		t.Helper()
		build := func(id uint8, secret []byte) (packet.Packet, error) {
			b := packet.New(nil, code, id, nil)
			b.AddMA()
			b.Add(packet.AttrNASIPAddress, []byte{127, 0, 0, 1})
			b.AddString(packet.AttrUserName, user)
			return b.Finish(secret, nil)
		}
		var req packet.Packet
		record := func(id uint8, secret []byte) (packet.Packet, error) {
			p, err := build(id, secret)
			req = p
			return p, err
		}
		// Until the pool's connection has sent its first Status-Server, the double has no
		// connection to send on; that is at most StatusInterval (1s) after connecting.
		for range 100 {
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cloud.SendRequest(sctx, record)
			scancel()
			if errors.Is(err, radsectest.ErrNoConn) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("%v: %v", code, err)
			}
			if !packet.CheckResponseAuthenticator(resp, req.Authenticator(), []byte("radsec")) ||
				packet.CheckResponseMA(resp, req.Authenticator(), []byte("radsec")) != packet.MAValid {
				t.Fatalf("answer to %v does not verify with the RadSec secret", code)
			}
			return resp
		}
		t.Fatal("the pool never connected")
		return nil
	}
	if resp := send(packet.CodeCoARequest, "alice"); resp.Code() != packet.CodeCoAACK {
		t.Errorf("CoA-Request answered %v, want CoA-ACK", resp.Code())
	}
	resp := send(packet.CodeDisconnectRequest, "nosession")
	if resp.Code() != packet.CodeDisconnectNAK {
		t.Errorf("Disconnect-Request answered %v, want Disconnect-NAK", resp.Code())
	}
	if v, ok := resp.Attr(101); !ok || len(v) != 4 || v[3] != 503%256 || v[2] != 503/256 {
		t.Errorf("Error-Cause %x, want 503 relayed from the NAS", v)
	}
	if o := l.seen.last(); o.From != "cloud:cloud" || o.NAS != "sw1" || o.Result != "nak" || o.ErrorCause != 503 {
		t.Errorf("outcome %+v", o)
	}
	recs, _ := l.nas.CoA()
	if len(recs) != 2 {
		t.Errorf("the NAS logged %d requests, want 2", len(recs))
	}
}
