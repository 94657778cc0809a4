package proxy

import (
	"net/netip"
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

// Request is one RADIUS request from a NAS on its way through mxedge. It is created by a front door
// (UDP or RadSec listener) after validation and is answered exactly once through Reply.
type Request struct {
	Client    *Client
	Src       netip.AddrPort
	Transport Transport
	Packet    packet.Packet // owned by the request; never modified
	Received  time.Time
	Deadline  time.Time // the request's budget: after it, the upstream is given up on

	udp  *sockio.Sender   // sends on the socket a UDP request came in on, or nil
	rs   radsec.ReplyFunc // the stream a RadSec request came in on, when udp is nil
	dup  *dupEntry
	dups *dupCache
}

// Secret is the secret the NAS used, which every response must be signed with.
func (r *Request) Secret() []byte { return r.Client.Secret }

// Reply sends resp to the NAS and records it for retransmissions. A nil resp records that the
// request was deliberately not answered (accounting that could not be stored, a drop policy), so a
// retransmission is processed again rather than answered.
func (r *Request) Reply(resp []byte) {
	if r.dups != nil {
		r.dups.complete(r.dup, resp)
	}
	if resp == nil {
		return
	}
	r.Client.stats.Responses.Add(1)
	send(r.udp, r.Src, r.rs, resp)
}
