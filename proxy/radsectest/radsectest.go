// Package radsectest provides a minimal RadSec responder for tests and benchmarks, in the spirit of
// net/http/httptest: it accepts mutually authenticated TLS, answers Access-Request with
// Access-Accept (or Access-Reject for the user "reject"), Accounting-Request with
// Accounting-Response and Status-Server with Access-Accept, echoing Proxy-State as RFC 2865 requires.
// It can be told to blackhole (read but never answer) to simulate a WAN cut without RST. As the
// cloud NAC does, it can send CoA-Request and Disconnect-Request on a connection its client opened
// (SendRequest), reading the answer from the same connection.
package radsectest

import (
	"context"
	"crypto/tls"
	"errors"
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

	mu    sync.Mutex
	name  string
	reply func(b *packet.Builder, req packet.Packet)
	conns map[net.Conn]bool
	// replies are the connections' ReplyFuncs (known once the client sent anything), which
	// SendRequest writes requests with; waiting are its requests by identifier.
	replies map[net.Conn]radsec.ReplyFunc
	waiting map[uint8]chan packet.Packet
	nextID  uint8
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// Start listens on 127.0.0.1:0 with cfg (server certificate, ClientCAs, RequireAndVerifyClientCert).
func Start(cfg *tls.Config, secret string) (*Responder, error) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln := &tlsListener{Listener: tcp, cfg: cfg}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Responder{ln: ln, secret: []byte(secret), conns: map[net.Conn]bool{}, cancel: cancel,
		replies: map[net.Conn]radsec.ReplyFunc{}, waiting: map[uint8]chan packet.Packet{}}
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
				radsec.ServeConn(ctx, nc, radsec.ServeOptions{}, func(p packet.Packet, reply radsec.ReplyFunc) {
					r.mu.Lock()
					r.replies[nc] = reply
					r.mu.Unlock()
					r.handle(p, reply)
				})
				r.mu.Lock()
				delete(r.conns, nc)
				delete(r.replies, nc)
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

// ErrNoConn is returned by SendRequest when no client connection has sent anything yet.
var ErrNoConn = errors.New("radsectest: no client connection to send on")

// SendRequest sends the request build makes with identifier id (signed with the RadSec secret)
// on a client connection and returns the answer that comes back on it.
func (r *Responder) SendRequest(ctx context.Context, build func(id uint8, secret []byte) (packet.Packet, error)) (packet.Packet, error) {
	r.mu.Lock()
	var reply radsec.ReplyFunc
	for _, f := range r.replies {
		reply = f
		break
	}
	id := r.nextID
	r.nextID++
	ch := make(chan packet.Packet, 1)
	r.waiting[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}()
	if reply == nil {
		return nil, ErrNoConn
	}
	p, err := build(id, r.secret)
	if err != nil {
		return nil, err
	}
	if err := reply(p); err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *Responder) handle(p packet.Packet, reply radsec.ReplyFunc) {
	switch p.Code() {
	case packet.CodeCoAACK, packet.CodeCoANAK, packet.CodeDisconnectACK, packet.CodeDisconnectNAK:
		r.mu.Lock()
		ch := r.waiting[p.ID()]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- append(packet.Packet(nil), p...):
			default:
			}
		}
		return
	}
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
