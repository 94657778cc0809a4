package radsec

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

// BenchmarkConnExchange measures one request and reply through a client Conn and ServeConn over
// loopback TCP and TLS, 64 in flight: allocations per exchange are the figure to watch.
func BenchmarkConnExchange(b *testing.B) { benchExchange(b, false) }

// BenchmarkConnExchange11 is BenchmarkConnExchange on a connection that negotiated RADIUS/1.1,
// with native encoders on both ends (Token, nothing signed); read it against
// BenchmarkConnExchange in the same run.
func BenchmarkConnExchange11(b *testing.B) { benchExchange(b, true) }

func benchExchange(b *testing.B, v11 bool) {
	lab := pkitest.Must(b)
	scfg := lab.ServerTLS()
	if v11 {
		VersionAllow.Apply(scfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		ServeConn(ctx, Server(raw, scfg), ServeOptions{}, func(p packet.Packet, reply ReplyFunc) {
			if v11 {
				var resp [packet.HeaderLen]byte
				resp[0], resp[3] = byte(packet.CodeAccessAccept), packet.HeaderLen
				packet.SetToken(resp[:], p.Token())
				reply(resp[:])
				return
			}
			rb := packet.NewResponse(nil, p, packet.CodeAccessAccept)
			resp, _ := rb.Finish([]byte(DefaultSecret), p.Authenticator())
			reply(resp)
		})
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	if v11 {
		VersionAllow.Apply(cfg)
	}
	nc := Client(raw, cfg)
	if err := nc.Handshake(); err != nil {
		b.Fatal(err)
	}
	c := NewConn(nc, ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour})
	if c.RADIUS11() != v11 {
		b.Fatalf("RADIUS/1.1 %v, want %v", c.RADIUS11(), v11)
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	defer func() { cancel(); ln.Close(); wg.Wait() }()

	build := func(dst []byte, id uint8) (packet.Packet, error) {
		bl := packet.New(dst, packet.CodeAccessRequest, id, make([]byte, packet.AuthLen))
		bl.AddMA()
		bl.AddString(packet.AttrUserName, "bench")
		return bl.Finish([]byte(DefaultSecret), nil)
	}
	build11 := func(dst []byte, id uint8) (packet.Packet, error) {
		bl := packet.New(dst, packet.CodeAccessRequest, 0, nil)
		bl.AddString(packet.AttrUserName, "bench")
		return bl.Finish(nil, nil)
	}
	sem := make(chan struct{}, 64)
	h := func(packet.Packet, error) { <-sem }
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		sem <- struct{}{}
		if err := c.ExchangeNative(build, build11, time.Now().Add(5*time.Second), h); err != nil {
			b.Fatal(err)
		}
		n++
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
}
