// Package radsectest provides a minimal RadSec responder for tests and benchmarks, in the spirit of
// net/http/httptest: it accepts mutually authenticated TLS, answers Access-Request with
// Access-Accept (or Access-Reject for the user "reject"), Accounting-Request with
// Accounting-Response and Status-Server with Access-Accept, echoing Proxy-State as RFC 2865 requires.
// It can be told to blackhole (read but never answer) to simulate a WAN cut without RST.
package radsectest

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// Responder is a running RadSec responder.
type Responder struct {
	ln     net.Listener
	secret []byte

	blackhole atomic.Bool
	delay     atomic.Int64
	Requests  atomic.Uint64 // Access- and Accounting-Requests received
	Probes    atomic.Uint64 // Status-Server received
	Answered  atomic.Uint64 // Access- and Accounting-Requests answered

	mu     sync.Mutex
	name   string
	reply  func(b *packet.Builder, req packet.Packet)
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// Start listens on 127.0.0.1:0 with cfg (server certificate, ClientCAs, RequireAndVerifyClientCert).
func Start(cfg *tls.Config, secret string) (*Responder, error) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln := &tlsListener{Listener: tcp, cfg: cfg}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Responder{ln: ln, secret: []byte(secret), conns: map[net.Conn]bool{}, cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns[nc] = true
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				radsec.ServeConn(ctx, nc, radsec.ServeOptions{}, r.handle)
				r.mu.Lock()
				delete(r.conns, nc)
				r.mu.Unlock()
			}()
		}
	}()
	return r, nil
}

// SetName makes the responder run a two-round challenge for the user "challenge": the first
// request gets Access-Challenge with State = name, a request carrying a State gets Access-Accept
// with Reply-Message = "<name> saw <State>" (to test EAP State affinity).
func (r *Responder) SetName(name string) {
	r.mu.Lock()
	r.name = name
	r.mu.Unlock()
}

// SetReply makes the responder add attributes to each Access-Accept (after the echoed
// Proxy-State).
func (r *Responder) SetReply(f func(b *packet.Builder, req packet.Packet)) {
	r.mu.Lock()
	r.reply = f
	r.mu.Unlock()
}

// Addr is the listening address.
func (r *Responder) Addr() netip.AddrPort { return r.ln.Addr().(*net.TCPAddr).AddrPort() }

// Blackhole makes the responder read requests but never answer (a dead WAN without RST), or answer again.
func (r *Responder) Blackhole(on bool) { r.blackhole.Store(on) }

// SetDelay delays every answer.
func (r *Responder) SetDelay(d time.Duration) { r.delay.Store(int64(d)) }

// CloseConns drops every established connection (an upstream restart).
func (r *Responder) CloseConns() {
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
}

// Close stops the responder and waits for its goroutines.
func (r *Responder) Close() {
	r.ln.Close()
	r.cancel()
	r.CloseConns()
	r.wg.Wait()
}

func (r *Responder) handle(p packet.Packet, reply radsec.ReplyFunc) {
	if p.Code() == packet.CodeStatusServer {
		r.Probes.Add(1)
	} else {
		r.Requests.Add(1)
	}
	if r.blackhole.Load() {
		return
	}
	if d := time.Duration(r.delay.Load()); d > 0 {
		go func() {
			time.Sleep(d)
			r.answer(p, reply)
		}()
		return
	}
	r.answer(p, reply)
}

func (r *Responder) answer(p packet.Packet, reply radsec.ReplyFunc) {
	r.mu.Lock()
	name, extraAttrs := r.name, r.reply
	r.mu.Unlock()
	code := packet.CodeAccessAccept
	var extra []byte
	switch p.Code() {
	case packet.CodeAccountingRequest:
		code = packet.CodeAccountingResponse
	case packet.CodeAccessRequest:
		u, _ := p.Attr(packet.AttrUserName)
		if string(u) == "reject" {
			code = packet.CodeAccessReject
		}
		if string(u) == "challenge" && name != "" {
			if state, ok := p.Attr(packet.AttrState); ok {
				extra = []byte(name + " saw " + string(state))
			} else {
				code = packet.CodeAccessChallenge
			}
		}
	case packet.CodeStatusServer:
	default:
		return
	}
	b := packet.NewResponse(nil, p, code)
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == packet.AttrProxyState {
			b.Add(typ, v)
		}
	}
	if code == packet.CodeAccessChallenge {
		b.AddString(packet.AttrState, name)
	}
	if extra != nil {
		b.Add(packet.AttrReplyMessage, extra)
	}
	if code == packet.CodeAccessAccept && p.Code() == packet.CodeAccessRequest && extraAttrs != nil {
		extraAttrs(&b, p)
	}
	resp, err := b.Finish(r.secret, p.Authenticator())
	if err != nil {
		return
	}
	if p.Code() != packet.CodeStatusServer {
		r.Answered.Add(1)
	}
	reply(resp)
}

// tlsListener is tls.Listen with radsec's batching server connections.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return radsec.Server(c, l.cfg), nil
}
