package radsec

import (
	"bufio"
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"mxedge/proxy/packet"
)

func coaRequest(tb testing.TB, id uint8) packet.Packet {
	tb.Helper()
	b := packet.New(nil, packet.CodeCoARequest, id, nil)
	b.AddMA()
	b.AddString(packet.AttrUserName, "alice")
	p, err := b.Finish([]byte(DefaultSecret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestConnServerRequests: a CoA-Request the server sends on the client's connection, on the
// identifier of a request of ours still outstanding, goes to Requests; its answer goes back on
// the same connection; our request still gets its own reply. Without Requests, the CoA-Request
// is discarded and counted like a stray reply.
func TestConnServerRequests(t *testing.T) {
	for _, handled := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			obs := new(countObserver)
			got := make(chan packet.Packet, 1)
			o := ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour, Observer: obs}
			if handled {
				o.Requests = func(p packet.Packet, reply ReplyFunc) {
					got <- append(packet.Packet(nil), p...)
					b := packet.NewResponse(nil, p, packet.CodeCoAACK)
					resp, err := b.Finish([]byte(DefaultSecret), p.Authenticator())
					if err != nil {
						t.Error(err)
						return
					}
					if err := reply(resp); err != nil {
						t.Error(err)
					}
				}
			}
			c := NewConn(client, o)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go c.Run(ctx)
			r := bufio.NewReader(server)
			done := make(chan error, 1)
			c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return accessRequest(dst, id, "u", 0) },
				time.Now().Add(10*time.Second), func(_ packet.Packet, err error) { done <- err })
			req, err := ReadPacket(r)
			if err != nil {
				t.Fatal(err)
			}
			coa := coaRequest(t, req.ID())
			server.Write(coa)
			if handled {
				if p := <-got; p.Code() != packet.CodeCoARequest || p.ID() != req.ID() {
					t.Fatalf("Requests got %v id %d", p.Code(), p.ID())
				}
				ack, err := ReadPacket(r)
				if err != nil {
					t.Fatal(err)
				}
				if ack.Code() != packet.CodeCoAACK || !packet.CheckResponseAuthenticator(ack, coa.Authenticator(), []byte(DefaultSecret)) {
					t.Fatalf("answer on the connection: %v, not a CoA-ACK to the request", ack.Code())
				}
			} else {
				synctest.Wait()
				if obs.discarded.Load() != 1 {
					t.Fatalf("discarded %d, want 1", obs.discarded.Load())
				}
			}
			server.Write(accept(t, req))
			if err := <-done; err != nil {
				t.Fatalf("our request: %v", err)
			}
			if c.Inflight() != 0 {
				t.Errorf("inflight %d after the answer", c.Inflight())
			}
		})
	}
}
