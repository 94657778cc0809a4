package localeap

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
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

	// mu guards the conversation table: by State, by station (NAS, Calling-Station-Id) and the
	// count per NAS.
	mu       sync.Mutex
	convs    map[string]*conversation
	stations map[string]*conversation
	perNAS   map[string]int

	randMu   sync.Mutex   // guards o.Rand when it is not crypto/rand
	lastWarn atomic.Int64 // unix nanos of the last overflow warning
	salt     atomic.Uint32
	stats    counters
}

// conversation is one EAP-TLS exchange, keyed by the State we issued and by its station.
type conversation struct {
	key     string
	station string    // NAS and Calling-Station-Id, "" without a MAC; immutable
	started time.Time // immutable
	expires time.Time // immutable
	first   time.Time // the deadline for the first step (the ClientHello); immutable
	mac     string
	nas     string
	site    string
	// stepped is set once the peer answered the EAP-TLS Start: from then on the conversation is
	// bound by expires only, and is no longer displaced by new ones at a cap.
	stepped atomic.Bool

	mu      sync.Mutex // serialises the packets of one conversation
	srv     *eaptls.Server
	done    bool
	outer   string            // EAP-Response/Identity, possibly anonymous
	peer    string            // certificate identity, set by VerifyPeer on the handshake goroutine under Step
	leaf    *x509.Certificate // the certificate presented, set with peer
	lastIn  []byte            // last EAP-Response processed and the EAP-Request it produced, to answer
	lastOut []byte            // an EAP-level retransmission (RFC 3748 §4.1) without advancing
}

// deadline is when c expires: its first-step deadline until the peer answered the Start.
func (c *conversation) deadline() time.Time {
	if !c.stepped.Load() && c.first.Before(c.expires) {
		return c.first
	}
	return c.expires
}

type counters struct {
	started, accepted, rejected, challenges, discarded, overflow, expired, unknownState atomic.Uint64
	replaced, displaced                                                                 atomic.Uint64
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
	Overflow     uint64 // new conversations refused: every slot held a conversation past its first step
	Expired      uint64 // conversations ended by ConversationTimeout or FirstStepTimeout
	UnknownState uint64 // requests whose State we did not issue or no longer hold
	Replaced     uint64 // conversations replaced by a new EAP-Response/Identity from their station
	Displaced    uint64 // conversations still waiting for their first step, dropped at a cap for a new one
}

// New validates o and returns a Handler; Authorizer is required (built, not configured, so
// Validate does not check it).
func New(o Options) (*Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Authorizer == nil {
		return nil, fmt.Errorf("%w: no authorizer", ErrConfig)
	}
	o = o.withDefaults()
	h := &Handler{o: o, convs: make(map[string]*conversation), stations: make(map[string]*conversation), perNAS: make(map[string]int)}
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
	chains verifiedChains // verified under this trust only
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

// Owns reports whether state is the State of a conversation this handler holds: the request
// continuing it must stay with this edge (a cluster peer or the cloud never issued it).
func (h *Handler) Owns(state []byte) bool {
	h.mu.Lock()
	_, ok := h.convs[string(state)]
	h.mu.Unlock()
	return ok
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
		Replaced: c.replaced.Load(), Displaced: c.displaced.Load(),
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
	c := &conversation{key: string(st[:]), started: now, expires: now.Add(h.o.ConversationTimeout), first: now.Add(h.o.FirstStepTimeout),
		mac: ev.MAC, nas: ev.NAS, site: ev.Site, outer: ev.Identity}
	if ev.MAC != "" {
		c.station = ev.NAS + "\x00" + ev.MAC
	}
	tr := h.trust.Load()
	cfg := tr.base
	cfg.FragmentSize = fragmentSize(h.o.FragmentSize, ra.mtu)
	cfg.VerifyPeer = func(chain []*x509.Certificate) error {
		c.peer, c.leaf = certIdentity(chain[0], h.o.IdentityOrder), chain[0]
		return tr.chains.verify(chain, tr.verify)
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

// admit inserts c into the table. A conversation of the same station (NAS, Calling-Station-Id)
// is replaced: a new EAP-Response/Identity restarts the client's authentication. At a cap
// (MaxConversationsPerNAS for c's NAS, MaxConversations in all) expired conversations go first,
// then the oldest one still waiting for its first step, so a flood of Identity messages from
// spoofed MACs displaces only conversations like its own and never one in its TLS handshake.
// admit reports false when every slot at the cap holds a conversation past its first step.
func (h *Handler) admit(c *conversation, now time.Time) bool {
	var gone, expired []*conversation
	h.mu.Lock()
	if old := h.stations[c.station]; c.station != "" && old != nil {
		h.detachLocked(old)
		gone = append(gone, old)
		h.stats.replaced.Add(1)
	}
	if h.perNAS[c.nas] >= h.o.MaxConversationsPerNAS || len(h.convs) >= h.o.MaxConversations {
		expired = h.expiredLocked(now)
	}
	// The per-NAS cap first, then the global one, each judged after the previous displacement.
	ok := true
	for _, full := range []func() (bool, string){
		func() (bool, string) { return h.perNAS[c.nas] >= h.o.MaxConversationsPerNAS, c.nas },
		func() (bool, string) { return len(h.convs) >= h.o.MaxConversations, "" },
	} {
		at, nas := full()
		if !ok || !at {
			continue
		}
		if v := h.oldestFreshLocked(nas); v != nil {
			h.detachLocked(v)
			gone = append(gone, v)
			h.stats.displaced.Add(1)
		} else {
			ok = false
		}
	}
	if ok {
		h.convs[c.key] = c
		if c.station != "" {
			h.stations[c.station] = c
		}
		h.perNAS[c.nas]++
	}
	h.mu.Unlock()
	for _, v := range gone {
		v.mu.Lock()
		v.close()
		v.mu.Unlock()
	}
	h.expire(expired)
	return ok
}

// detachLocked removes c from the table; h.mu is held.
func (h *Handler) detachLocked(c *conversation) {
	if h.convs[c.key] != c {
		return
	}
	delete(h.convs, c.key)
	if c.station != "" && h.stations[c.station] == c {
		delete(h.stations, c.station)
	}
	if h.perNAS[c.nas]--; h.perNAS[c.nas] <= 0 {
		delete(h.perNAS, c.nas)
	}
}

// oldestFreshLocked returns the oldest conversation (of nas, or of any NAS when nas is "") that
// has not had its first step, or nil; h.mu is held. A linear scan: it runs only at a cap, and the
// table is bounded by it.
func (h *Handler) oldestFreshLocked(nas string) *conversation {
	var best *conversation
	for _, c := range h.convs {
		if c.stepped.Load() || nas != "" && c.nas != nas {
			continue
		}
		if best == nil || c.started.Before(best.started) {
			best = c
		}
	}
	return best
}

// expiredLocked detaches and returns the conversations past their deadline; h.mu is held.
func (h *Handler) expiredLocked(now time.Time) []*conversation {
	var old []*conversation
	for _, c := range h.convs {
		if !now.Before(c.deadline()) {
			old = append(old, c)
		}
	}
	for _, c := range old {
		h.detachLocked(c)
	}
	return old
}

// close ends c without an event; c.mu is held.
func (c *conversation) close() {
	if c.done {
		return
	}
	c.done = true
	c.srv.Close()
	c.lastIn, c.lastOut = nil, nil
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
	if !h.o.Now().Before(c.deadline()) {
		h.end(c)
		h.stats.expired.Add(1)
		ev.SetCertificate(c.leaf)
		ev.Reason = ReasonTimeout
		return h.reject(req, eapFailure(ra.eap[1]), ev, "")
	}
	if bytes.Equal(ra.eap, c.lastIn) {
		// The supplicant answered a retransmitted EAP-Request again and the NAS sent it in a new
		// Access-Request: repeat our request rather than fail the conversation as out of order.
		return h.challenge(req, c, c.lastOut)
	}
	c.stepped.Store(true)
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
	ev.SetCertificate(c.leaf)
	ev.Reason = reasonFor(err)
	if errors.Is(err, eaptls.ErrPeerCertificate) {
		ev.Type = certificateType(c.leaf, ev.Reason)
	}
	h.o.Logger.Debug("eap-tls failed", "nas", ev.NAS, "mac", ev.MAC, "user", ev.Identity, "reason", ev.Reason, "err", err)
	msg := ""
	if ev.Reason == ReasonNak {
		msg = nakReplyMessage
	}
	return h.reject(req, out, ev, msg)
}

// end removes c from the table and stops its handshake; c.mu is held.
func (h *Handler) end(c *conversation) {
	h.mu.Lock()
	h.detachLocked(c)
	h.mu.Unlock()
	c.close()
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

// accept decides on a verified certificate through the Authorizer: the authorization cached for
// that certificate identity (never for the MAC alone), the default VLAN, or a reject when failmode
// is closed.
func (h *Handler) accept(req *proxy.Request, c *conversation, success []byte, ev Event) packet.Packet {
	res := c.srv.Result()
	var leaf *x509.Certificate
	if res != nil && len(res.PeerCertificates) > 0 {
		leaf = res.PeerCertificates[0]
	}
	failure := eapFailure(success[1])
	ev.Identity = certIdentity(leaf, h.o.IdentityOrder)
	ev.SetCertificate(leaf)
	if res == nil || ev.Identity == "" {
		ev.Reason = ReasonNoIdentity
		return h.reject(req, failure, ev, "")
	}
	v := h.o.Authorizer.Authorize(survivability.Proof{Method: cache.MethodEAPTLS, MAC: ev.MAC, Identity: ev.Identity}, req.Client.Vendor, req.Client.Site)
	ev.Reason, ev.VLAN = v.Reason, v.VLAN
	if !v.Allowed {
		return h.reject(req, failure, ev, "")
	}

	secret, reqAuth := req.Client.Secret, req.Packet.Authenticator()
	b := packet.NewResponse(make([]byte, 0, 512), req.Packet, packet.CodeAccessAccept)
	// User-Name is the identity the certificate proved (RFC 2865 §5.1), the only one named.
	if len(ev.Identity) <= maxAttrValue {
		b.AddString(packet.AttrUserName, ev.Identity)
	}
	survivability.AppendAttrs(&b, v.Attrs)
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
	ev.SetStation(req.Packet)
	h.emit(ev)
	return resp
}

// reject builds the Access-Reject with the EAP-Failure (when there is an EAP conversation to end)
// and a Reply-Message, and emits the event.
func (h *Handler) reject(req *proxy.Request, failure []byte, ev Event, msg string) packet.Packet {
	h.stats.rejected.Add(1)
	ev.SetStation(req.Packet)
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
	if ev.Type == "" {
		ev.Type = survivability.AccessType(ev.Allowed)
	}
	if h.o.Events != nil {
		h.o.Events(ev)
	}
}

// Run expires abandoned conversations until ctx is cancelled, then ends every conversation in
// progress and returns nil.
func (h *Handler) Run(ctx context.Context) error {
	iv := min(time.Second, max(h.o.FirstStepTimeout/4, 10*time.Millisecond))
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
	h.mu.Lock()
	old := h.expiredLocked(now)
	h.mu.Unlock()
	h.expire(old)
}

// expire ends conversations already detached from the table for timing out, each with an event.
func (h *Handler) expire(old []*conversation) {
	for _, c := range old {
		c.mu.Lock()
		if !c.done {
			c.close()
			h.stats.expired.Add(1)
			ev := Event{Method: MethodEAPTLS, MAC: c.mac, NAS: c.nas, Site: c.site, Identity: c.outer, Reason: ReasonTimeout}
			if c.peer != "" {
				ev.Identity = c.peer
			}
			ev.SetCertificate(c.leaf)
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
	h.stations = make(map[string]*conversation)
	h.perNAS = make(map[string]int)
	h.mu.Unlock()
	for _, c := range all {
		c.mu.Lock()
		c.close()
		c.mu.Unlock()
	}
}
