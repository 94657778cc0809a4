package localeap

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/cache"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
	"mxedge/survivability/eaptls"
)

// Handler answers EAP-TLS Access-Requests locally. It is safe for concurrent use; Run expires
// abandoned conversations.
type Handler struct {
	o     Options
	trust atomic.Pointer[trust]

	mu    sync.Mutex
	convs map[string]*conversation

	randMu   sync.Mutex   // guards o.Rand when it is not crypto/rand
	lastWarn atomic.Int64 // unix nanos of the last overflow warning
	salt     atomic.Uint32
	stats    counters
}

// conversation is one EAP-TLS exchange, keyed by the State we issued.
type conversation struct {
	key     string
	expires time.Time // immutable
	mac     string
	nas     string
	site    string

	mu      sync.Mutex // serialises the packets of one conversation
	srv     *eaptls.Server
	done    bool
	outer   string // EAP-Response/Identity, possibly anonymous
	peer    string // certificate identity, set by VerifyPeer on the handshake goroutine under Step
	lastIn  []byte // last EAP-Response processed and the EAP-Request it produced, to answer
	lastOut []byte // an EAP-level retransmission (RFC 3748 §4.1) without advancing
}

type counters struct {
	started, accepted, rejected, challenges, discarded, overflow, expired, unknownState atomic.Uint64
}

// Stats are the handler's counters since New.
type Stats struct {
	Conversations int    // in progress now
	Started       uint64 // conversations begun (EAP-Response/Identity without State)
	Challenges    uint64 // Access-Challenges sent
	Accepted      uint64
	Rejected      uint64
	// Discarded counts Access-Requests with EAP-Message but without a valid Message-Authenticator,
	// silently discarded (RFC 3579 §3.2).
	Discarded    uint64
	Overflow     uint64 // new conversations refused at MaxConversations
	Expired      uint64 // conversations ended by ConversationTimeout
	UnknownState uint64 // requests whose State we did not issue or no longer hold
}

// New validates o and returns a Handler.
func New(o Options) (*Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	h := &Handler{o: o, convs: make(map[string]*conversation)}
	h.trust.Store(&trust{base: o.serverConfig(), verify: o.Verify})
	var seed [4]byte
	if err := h.random(seed[:]); err != nil {
		return nil, err
	}
	h.salt.Store(binary.BigEndian.Uint32(seed[:]))
	return h, nil
}

// trust is the certificate material new conversations start with.
type trust struct {
	base   eaptls.ServerConfig
	verify pki.VerifyOptions
}

// SetTrust installs a new server certificate chain and organization CA bundle (a reload).
// Conversations in progress finish with the material they started with; new ones use the new.
func (h *Handler) SetTrust(certs []tls.Certificate, roots *x509.CertPool) {
	old := h.trust.Load()
	next := &trust{base: old.base, verify: old.verify}
	if len(certs) > 0 {
		next.base.Certificates = certs
	}
	if roots != nil {
		next.verify.Roots = roots
	}
	h.trust.Store(next)
}

// Stats returns a snapshot of the counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	n := len(h.convs)
	h.mu.Unlock()
	c := &h.stats
	return Stats{
		Conversations: n, Started: c.started.Load(), Challenges: c.challenges.Load(),
		Accepted: c.accepted.Load(), Rejected: c.rejected.Load(), Discarded: c.discarded.Load(),
		Overflow: c.overflow.Load(), Expired: c.expired.Load(), UnknownState: c.unknownState.Load(),
	}
}

func (h *Handler) random(b []byte) error {
	if h.o.Rand == nil {
		_, err := rand.Read(b)
		return err
	}
	h.randMu.Lock()
	defer h.randMu.Unlock()
	if _, err := io.ReadFull(h.o.Rand, b); err != nil {
		return fmt.Errorf("localeap: reading randomness: %w", err)
	}
	return nil
}

// Serve answers one Access-Request carrying EAP: an Access-Challenge while the conversation goes
// on, then an Access-Accept or Access-Reject, signed with the NAS's secret. It returns nil for a
// request it silently discards: not an Access-Request, or EAP without a valid
// Message-Authenticator (RFC 3579 §3.2).
func (h *Handler) Serve(req *proxy.Request) packet.Packet {
	if req == nil || req.Client == nil {
		return nil
	}
	p := req.Packet
	if len(p) < packet.HeaderLen || p.Code() != packet.CodeAccessRequest {
		return nil
	}
	secret := req.Client.Secret
	ra := readRequest(p)
	ev := Event{Method: MethodEAPTLS, NAS: req.Client.Name, Site: req.Client.Site}
	if mac, err := cache.NormalizeMAC(ra.calling); err == nil {
		ev.MAC = mac
	}
	if ra.eap == nil {
		ev.Reason = ReasonMalformed
		return h.reject(req, nil, ev, "no EAP-Message")
	}
	// RFC 3579 §3.2: an Access-Request with EAP-Message and without a valid
	// Message-Authenticator MUST be silently discarded.
	if packet.CheckRequestMA(p, secret) != packet.MAValid {
		h.stats.discarded.Add(1)
		h.o.Logger.Debug("eap request without valid message-authenticator discarded", "nas", req.Client.Name, "id", p.ID())
		return nil
	}
	if len(ra.eap) < eapHeaderLen {
		ev.Reason = ReasonMalformed
		return h.reject(req, eapFailure(0), ev, "EAP-Message shorter than the EAP header")
	}
	if ra.state == nil {
		return h.start(req, ra, ev)
	}
	h.mu.Lock()
	c := h.convs[string(ra.state)]
	h.mu.Unlock()
	if c == nil || c.nas != req.Client.Name {
		// Not ours, replayed after the end, expired, or issued to another NAS (a State is only
		// valid with the NAS it was sent to): reject so the supplicant starts over.
		h.stats.unknownState.Add(1)
		ev.Reason = ReasonUnknownState
		return h.reject(req, eapFailure(ra.eap[1]), ev, "")
	}
	return h.step(req, c, ra, ev)
}

// start begins a conversation on an EAP-Response/Identity (RFC 3748 §5.1) with the EAP-TLS Start.
func (h *Handler) start(req *proxy.Request, ra requestAttrs, ev Event) packet.Packet {
	failure := eapFailure(ra.eap[1])
	ep, err := eaptls.ParsePacket(ra.eap)
	if err != nil || ep.Code != eaptls.CodeResponse || ep.Type != eaptls.TypeIdentity {
		ev.Reason = ReasonMalformed
		return h.reject(req, failure, ev, "")
	}
	ev.Identity = string(ep.Data)
	now := h.o.Now()
	var st [stateLen]byte
	if err := h.random(st[:]); err != nil {
		h.o.Logger.Error("no randomness for eap state", "err", err)
		return nil
	}
	c := &conversation{key: string(st[:]), expires: now.Add(h.o.ConversationTimeout), mac: ev.MAC, nas: ev.NAS, site: ev.Site, outer: ev.Identity}
	tr := h.trust.Load()
	cfg := tr.base
	verify := tr.verify
	cfg.VerifyPeer = func(chain []*x509.Certificate) error {
		c.peer = certIdentity(chain[0], h.o.IdentityOrder)
		_, err := pki.Verify(chain, verify)
		return err
	}
	c.srv = eaptls.NewServer(&cfg)
	out, err := c.srv.Start(ra.eap)
	if err != nil {
		c.srv.Close()
		ev.Reason = reasonFor(err)
		return h.reject(req, failure, ev, "")
	}
	if !h.admit(c, now) {
		c.srv.Close()
		h.stats.overflow.Add(1)
		ev.Reason = ReasonTooMany
		if h.warnDue(now) {
			h.o.Logger.Warn("eap-tls conversations refused: too many in progress", "nas", ev.NAS, "mac", ev.MAC,
				"max", h.o.MaxConversations, "refused", h.stats.overflow.Load())
		}
		return h.reject(req, failure, ev, "")
	}
	h.stats.started.Add(1)
	c.lastIn, c.lastOut = append([]byte(nil), ra.eap...), out
	return h.challenge(req, c, out)
}

// warnDue rate-limits the overflow warning to one per overflowWarnEvery: under a flood the
// counter (Stats.Overflow) tells the size, the log only that it happens.
func (h *Handler) warnDue(now time.Time) bool {
	last := h.lastWarn.Load()
	if now.UnixNano()-last < int64(overflowWarnEvery) {
		return false
	}
	return h.lastWarn.CompareAndSwap(last, now.UnixNano())
}

const overflowWarnEvery = 10 * time.Second

// admit inserts c unless MaxConversations are in progress; expired ones are swept first, so the
// cap holds even when Run is not running.
func (h *Handler) admit(c *conversation, now time.Time) bool {
	h.mu.Lock()
	full := len(h.convs) >= h.o.MaxConversations
	h.mu.Unlock()
	if full {
		h.sweep(now)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.convs) >= h.o.MaxConversations {
		return false
	}
	h.convs[c.key] = c
	return true
}

// step feeds the next EAP-Response to the conversation.
func (h *Handler) step(req *proxy.Request, c *conversation, ra requestAttrs, ev Event) packet.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		h.stats.unknownState.Add(1)
		ev.Reason = ReasonUnknownState
		return h.reject(req, eapFailure(ra.eap[1]), ev, "")
	}
	ev.Identity = c.outer
	if !h.o.Now().Before(c.expires) {
		h.end(c)
		h.stats.expired.Add(1)
		ev.Reason = ReasonTimeout
		return h.reject(req, eapFailure(ra.eap[1]), ev, "")
	}
	if bytes.Equal(ra.eap, c.lastIn) {
		// The supplicant answered a retransmitted EAP-Request again and the NAS sent it in a new
		// Access-Request: repeat our request rather than fail the conversation as out of order.
		return h.challenge(req, c, c.lastOut)
	}
	out, st, err := c.srv.Step(ra.eap)
	switch st {
	case eaptls.Continue:
		c.lastIn, c.lastOut = append(c.lastIn[:0], ra.eap...), out
		return h.challenge(req, c, out)
	case eaptls.Succeeded:
		h.end(c)
		return h.accept(req, c, out, ev)
	}
	h.end(c)
	if c.peer != "" {
		ev.Identity = c.peer
	}
	ev.Reason = reasonFor(err)
	h.o.Logger.Debug("eap-tls failed", "nas", ev.NAS, "mac", ev.MAC, "user", ev.Identity, "reason", ev.Reason, "err", err)
	msg := ""
	if ev.Reason == ReasonNak {
		msg = nakReplyMessage
	}
	return h.reject(req, out, ev, msg)
}

// end removes c from the table and stops its handshake; c.mu is held.
func (h *Handler) end(c *conversation) {
	c.done = true
	h.mu.Lock()
	if h.convs[c.key] == c {
		delete(h.convs, c.key)
	}
	h.mu.Unlock()
	c.srv.Close()
	c.lastIn, c.lastOut = nil, nil
}

// challenge builds the Access-Challenge carrying out and the conversation's State. No
// Session-Timeout: RFC 3579 §2.6.1 would make it the NAS's EAP retransmission timer, and the
// NAS's own default suits the link better than anything this server knows.
func (h *Handler) challenge(req *proxy.Request, c *conversation, out []byte) packet.Packet {
	b := packet.NewResponse(make([]byte, 0, packet.HeaderLen+len(out)+len(out)/maxAttrValue*2+64), req.Packet, packet.CodeAccessChallenge)
	addEAP(&b, out)
	b.Add(packet.AttrState, []byte(c.key))
	resp, err := b.Finish(req.Client.Secret, req.Packet.Authenticator())
	if err != nil {
		h.o.Logger.Error("access-challenge not built", "nas", req.Client.Name, "id", req.Packet.ID(), "err", err)
		return nil
	}
	h.stats.challenges.Add(1)
	return resp
}

// accept decides on a verified certificate: the cached authorization, the default VLAN, or a
// reject when failmode is closed.
func (h *Handler) accept(req *proxy.Request, c *conversation, success []byte, ev Event) packet.Packet {
	res := c.srv.Result()
	var leaf *x509.Certificate
	if res != nil && len(res.PeerCertificates) > 0 {
		leaf = res.PeerCertificates[0]
	}
	failure := eapFailure(success[1])
	ev.Identity = certIdentity(leaf, h.o.IdentityOrder)
	if res == nil || ev.Identity == "" {
		ev.Reason = ReasonNoIdentity
		return h.reject(req, failure, ev, "")
	}
	var attrs []cache.Attr
	rec, hit := cache.Record{}, false
	if h.o.Cache != nil {
		var err error
		if rec, hit, err = h.o.Cache.Lookup(ev.Identity, ev.MAC); err != nil {
			// A broken cache is a miss: the default VLAN or failmode decides, as for a stranger.
			h.o.Logger.Error("cache lookup failed", "mac", ev.MAC, "user", ev.Identity, "err", err)
		}
	}
	vlan, failClosed := h.o.DefaultVLAN, h.o.FailClosed
	if h.o.Site != nil {
		vlan, failClosed = h.o.Site(req.Client.Site)
	}
	switch {
	case hit:
		attrs = authorization(rec.Attrs)
		ev.Reason = ReasonCacheHit
	case failClosed:
		ev.Reason = ReasonFailClosed
		return h.reject(req, failure, ev, "")
	case vlan != "":
		if h.o.VendorReply != nil {
			attrs = h.o.VendorReply(req.Client.Vendor, vlan)
		}
		if attrs == nil {
			attrs = survivability.DefaultVLANAttrs("generic", vlan)
		}
		ev.Reason = ReasonDefaultVLAN
	default:
		ev.Reason = ReasonDefaultVLAN
	}
	ev.VLAN = survivability.VLAN(attrs)
	if ev.VLAN == "" && ev.Reason == ReasonDefaultVLAN {
		ev.VLAN = vlan
	}

	secret, reqAuth := req.Client.Secret, req.Packet.Authenticator()
	b := packet.NewResponse(make([]byte, 0, 512), req.Packet, packet.CodeAccessAccept)
	if len(ev.Identity) <= maxAttrValue {
		b.AddString(packet.AttrUserName, ev.Identity)
	}
	survivability.AppendAttrs(&b, attrs)
	addEAP(&b, success)
	// RFC 2548 §2.4.2-3, RFC 3079 §4: the keys are salt-encrypted with the NAS's secret and this
	// request's authenticator. Each salt has its high bit set and is unique in the packet (and,
	// from a counter, across packets for a long while).
	recv, send := eaptls.MPPEKeys(res.MSK)
	s := h.salt.Add(2)
	salt := func(n uint32) [2]byte { return [2]byte{0x80 | byte(n>>8), byte(n)} }
	var enc [2 + 48]byte
	b.AddVSA(packet.VendorMicrosoft, msMPPERecvKey, packet.EncryptSalted(enc[:0], recv, salt(s), secret, reqAuth))
	b.AddVSA(packet.VendorMicrosoft, msMPPESendKey, packet.EncryptSalted(enc[:0], send, salt(s+1), secret, reqAuth))
	clear(recv)
	clear(send)
	clear(enc[:])
	resp, err := b.Finish(secret, reqAuth)
	if err != nil {
		// Cached attributes too big for one packet: refuse rather than drop them silently.
		h.o.Logger.Error("access-accept not built", "nas", ev.NAS, "user", ev.Identity, "err", err)
		ev.Reason = ReasonMalformed
		return h.reject(req, failure, ev, "")
	}
	ev.Allowed = true
	h.stats.accepted.Add(1)
	h.o.Logger.Debug("eap-tls accepted", "nas", ev.NAS, "mac", ev.MAC, "user", ev.Identity, "reason", ev.Reason)
	h.emit(ev)
	return resp
}

// reject builds the Access-Reject with the EAP-Failure (when there is an EAP conversation to end)
// and a Reply-Message, and emits the event.
func (h *Handler) reject(req *proxy.Request, failure []byte, ev Event, msg string) packet.Packet {
	h.stats.rejected.Add(1)
	h.emit(ev)
	if msg == "" {
		msg = "eap-tls: " + ev.Reason
	}
	b := packet.NewResponse(make([]byte, 0, 128), req.Packet, packet.CodeAccessReject)
	if failure != nil {
		addEAP(&b, failure)
	}
	b.AddString(packet.AttrReplyMessage, msg)
	resp, err := b.Finish(req.Client.Secret, req.Packet.Authenticator())
	if err != nil {
		h.o.Logger.Error("access-reject not built", "nas", req.Client.Name, "id", req.Packet.ID(), "err", err)
		return nil
	}
	return resp
}

func (h *Handler) emit(ev Event) {
	ev.Source = survivability.SourceLocal
	if h.o.Events != nil {
		h.o.Events(ev)
	}
}

// Run expires abandoned conversations until ctx is cancelled, then ends every conversation in
// progress and returns nil.
func (h *Handler) Run(ctx context.Context) error {
	iv := min(time.Second, max(h.o.ConversationTimeout/4, 10*time.Millisecond))
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.closeAll()
			return nil
		case <-t.C:
			h.sweep(h.o.Now())
		}
	}
}

// sweep ends the conversations whose timeout has passed, each with a timeout event.
func (h *Handler) sweep(now time.Time) {
	var old []*conversation
	h.mu.Lock()
	for k, c := range h.convs {
		if !now.Before(c.expires) {
			old = append(old, c)
			delete(h.convs, k)
		}
	}
	h.mu.Unlock()
	for _, c := range old {
		c.mu.Lock()
		if !c.done {
			c.done = true
			c.srv.Close()
			c.lastIn, c.lastOut = nil, nil
			h.stats.expired.Add(1)
			ev := Event{Method: MethodEAPTLS, MAC: c.mac, NAS: c.nas, Site: c.site, Identity: c.outer, Reason: ReasonTimeout}
			if c.peer != "" {
				ev.Identity = c.peer
			}
			h.o.Logger.Debug("eap-tls conversation expired", "nas", c.nas, "mac", c.mac, "user", ev.Identity)
			h.emit(ev)
		}
		c.mu.Unlock()
	}
}

// closeAll ends every conversation (shutdown): no events, the outcome is not the client's.
func (h *Handler) closeAll() {
	h.mu.Lock()
	all := h.convs
	h.convs = make(map[string]*conversation)
	h.mu.Unlock()
	for _, c := range all {
		c.mu.Lock()
		c.done = true
		c.srv.Close()
		c.mu.Unlock()
	}
}
