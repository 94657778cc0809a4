package proxy

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/sockio"
)

// Transport says how a request reached mxedge.
type Transport uint8

const (
	TransportUDP Transport = iota
	TransportRadSec
)

func (t Transport) String() string {
	if t == TransportRadSec {
		return "radsec"
	}
	return "udp"
}

// Origin says where a request came from.
type Origin struct {
	Port      Port // which requests the listener takes
	Transport Transport
	Src       netip.AddrPort
	// Stream tells RadSec streams from the same address apart for duplicate detection
	// (RFC 5080 §2.2.2); 0 for UDP.
	Stream uint64
	// Client is the NAS when the transport has identified it already (a RadSec peer, by address
	// and certificate); nil means the front door looks Src up in its client table.
	Client *Client
}

// ResponseWriter is how the transport that read a request answers it, in the manner of
// miekg/dns's ResponseWriter: the transport builds one (per datagram on a UDP socket, per
// connection on a RadSec stream) and hands it to Server.Accept with the request's bytes.
type ResponseWriter interface {
	// Origin says where the requests answered through this writer came from.
	Origin() Origin
	// WriteResponse sends resp, a signed response, to the peer. It never blocks on the network
	// and resp must not be modified afterwards.
	WriteResponse(resp []byte)
}

// udpWriter answers a datagram on the socket it came in on.
type udpWriter struct {
	out    *sockio.Sender
	origin Origin
}

func (w *udpWriter) Origin() Origin            { return w.origin }
func (w *udpWriter) WriteResponse(resp []byte) { w.out.Send(resp, w.origin.Src) }

// streamWriter answers on the RadSec stream requests came in on.
type streamWriter struct {
	reply  radsec.ReplyFunc
	origin Origin
}

func (w *streamWriter) Origin() Origin { return w.origin }

// WriteResponse queues resp on the stream. A stream that cannot take it is failing and closes
// itself; the NAS retransmits on its next one.
func (w *streamWriter) WriteResponse(resp []byte) { w.reply(resp) }

// newStreamWriter returns the ResponseWriter for a RadSec stream from client at src; stream
// identifies the connection (unique per listener) and reply writes to it.
func newStreamWriter(client *Client, src netip.AddrPort, stream uint64, reply radsec.ReplyFunc) ResponseWriter {
	return &streamWriter{reply: reply, origin: Origin{Port: PortRadSec, Transport: TransportRadSec, Src: src, Stream: stream, Client: client}}
}

// Request is one RADIUS request from a NAS on its way through mxedge. The front door creates it
// after validation and hands it to its Handler.
//
// The contract: every request handed to a Handler ends in exactly one Reply or one Drop. The first
// of them claims the request's answer slot; any later call is a bug, which is counted
// (Stats.ExtraAnswers), logged at error and otherwise ignored, so the NAS never gets two answers
// however the paths that answer (upstream reply, timeout, connection failure, reload, shutdown)
// race.
type Request struct {
	Client *Client
	// Src and Transport repeat the writer's Origin for the request's consumers.
	Src       netip.AddrPort
	Transport Transport
	Packet    packet.Packet // owned by the request; never modified
	Received  time.Time
	Deadline  time.Time // the request's budget: after it, the upstream is given up on

	w       ResponseWriter // nil for requests made without a transport (spool replay)
	uw      udpWriter      // w for a datagram: kept in the request, so a datagram costs no writer of its own
	front   *Server        // nil for requests made without a transport
	dup     dupHandle
	claimed atomic.Bool
	later   observation // the Observer's call, put off until the answer has left (Router.forward)
}

// Secret is the secret the NAS used, which every response must be signed with.
func (r *Request) Secret() []byte { return r.Client.Secret }

// Reply sends resp to the NAS and records it for retransmissions (RFC 5080 §2.2.2). Reply(nil) is
// Drop(DropUnanswered, nil), logged at debug only.
func (r *Request) Reply(resp []byte) {
	if resp == nil {
		r.Drop(DropUnanswered, nil)
		return
	}
	if !r.claim("reply") {
		return
	}
	if r.front != nil {
		r.front.dups.complete(r.dup, resp)
	}
	if st := r.Client.stats; st != nil {
		st.Responses.Add(1)
	}
	if r.w != nil {
		r.w.WriteResponse(resp)
	}
	if r.front != nil {
		r.front.stats.observeAnswer(r.Packet.Code(), r.front.opts.Now().Sub(r.Received))
	}
}

// Drop records that the request is deliberately left unanswered (accounting that could not be
// stored, a drop policy, a reply that could not be built): it counts reason, logs through the rate
// limiter, and completes the duplicate-cache entry without a response, so a retransmission is
// processed anew rather than absorbed.
func (r *Request) Drop(reason DropReason, err error) {
	if !r.claim("drop") {
		return
	}
	if r.front == nil {
		return
	}
	r.front.dups.complete(r.dup, nil)
	level := slog.LevelWarn
	if reason == DropUnanswered {
		// Reply(nil): the Handler that chose silence logs why.
		level = slog.LevelDebug
	}
	r.front.dropAt(level, reason, r.Client, r.Src, err)
}

// claim takes the answer slot; false means it was taken already and the caller must do nothing.
func (r *Request) claim(what string) bool {
	if r.claimed.CompareAndSwap(false, true) {
		return true
	}
	if s := r.front; s != nil {
		s.stats.ExtraAnswers.Add(1)
		s.limiter.log(s.opts.Logger, slog.LevelError, "extra-answer", "request answered twice: second answer discarded", s.opts.Now(),
			"nas", r.Client.Name, "peer", r.Src, "code", r.Packet.Code(), "id", r.Packet.ID(), "reason", what)
	}
	return false
}

// onRetransmit records f as what a retransmission of this request from the NAS triggers while
// it is in flight (RFC 5080 §2.2.1: a RADIUS/UDP upstream gets the same packet again).
func (r *Request) onRetransmit(f func()) {
	if r.front != nil {
		r.front.dups.setRetransmit(r.dup, f)
	}
}
